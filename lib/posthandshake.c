/* posthandshake.c - placeholder, being written: tickets and key updates after handoff. */
#include "internal.h"
