# Check the output of run-tests.sh (a VM serial log or a native run).
#   awk -v nbins=<number of binaries> -v totfile=<file> -f check-log.awk <log>
# Echoes CASE and summary lines, prints "ERROR: ..." per problem, writes
# "<passed> <failed> <errors>" to totfile, exits 1 on any failure.
# Only lines starting with "KTS:" (harness) or "KTS>" (binary output) count, so
# kernel console messages in between are ignored.

function err(msg) { print "ERROR: " msg; errors++ }

{ sub(/\r$/, "") } # the serial console ends lines with CR LF

/^KTS:MODULE / { if ($3 != "ok") err("module " $2 " failed to load (see the log)"); next }
/^KTS:TLSSTAT-MISSING/ { missing = 1; err("/proc/net/tls_stat missing (" $2 "): tls module not loaded"); next }
/^KTS:TLSSTAT-BEFORE / { before[$2] = $3; next }
/^KTS:TLSSTAT-AFTER / { after[$2] = $3; next }

/^KTS:BEGIN / {
	cur = $2; began++
	summary = expect = np = nf = 0
	print "== " cur
	next
}

/^KTS>/ {
	line = substr($0, 5)
	if (line ~ /^CASE /) {
		print line
		n = split(line, w, " ")
		if (w[n] == "ok") np++
		else if (w[n] == "FAIL") nf++
		else err(cur ": CASE line does not end in ok or FAIL: " line)
	} else if (line ~ /^[0-9]+ passed, [0-9]+ failed$/) {
		print line
		split(line, w, " ")
		sp = w[1] + 0; sf = w[3] + 0; summary = 1
	} else if (line ~ /^EXPECT-REKEY /) {
		if (line !~ /^EXPECT-REKEY TlsTxRekeyOk=[0-9]+ TlsRxRekeyOk=[0-9]+$/) {
			err(cur ": malformed EXPECT-REKEY line: " line)
		} else {
			split(line, w, /[ =]/)
			ektx += w[3]; ekrx += w[5]
		}
	} else if (line ~ /^EXPECT /) {
		if (line !~ /^EXPECT TlsTxSw=[0-9]+ TlsRxSw=[0-9]+$/) {
			err(cur ": malformed EXPECT line: " line)
		} else {
			split(line, w, /[ =]/)
			etx += w[3]; erx += w[5]; expect = 1
		}
	}
	next
}

/^KTS:END / {
	rc = substr($3, 4)
	if (!summary)
		err(cur ": no 'N passed, N failed' line")
	else if (sp != np || sf != nf)
		err(cur ": summary says " sp " passed, " sf " failed; CASE lines say " np ", " nf)
	if (!expect)
		err(cur ": no EXPECT line")
	if (rc != "0")
		err(cur ": exited with status " rc)
	passed += np; failed += nf; ended++
	next
}

/^KTS:DONE/ { done = 1 }

END {
	if (ended < began)
		err(cur ": did not finish (crashed, hung or killed by the timeout?)")
	else if (began < nbins)
		err("only " began + 0 " of " nbins " binaries started")
	if (!done) {
		err("run did not complete (no KTS:DONE)")
	} else if (("TlsTxSw" in after) && ("TlsRxSw" in before)) {
		dtx = after["TlsTxSw"] - before["TlsTxSw"]
		drx = after["TlsRxSw"] - before["TlsRxSw"]
		print "tls_stat: TlsTxSw +" dtx " TlsRxSw +" drx " (expected +" etx + 0 " +" erx + 0 ")"
		if (dtx != etx || drx != erx)
			err("/proc/net/tls_stat deltas differ from the EXPECT lines")
	} else if (!missing) {
		err("/proc/net/tls_stat has no TlsTxSw/TlsRxSw counters")
	}
	# Key replacements (Linux 6.14+ counts them; older kernels must expect none).
	if (done && ("TlsTxRekeyOk" in after) && ("TlsRxRekeyOk" in before)) {
		dktx = after["TlsTxRekeyOk"] - before["TlsTxRekeyOk"]
		dkrx = after["TlsRxRekeyOk"] - before["TlsRxRekeyOk"]
		print "tls_stat: TlsTxRekeyOk +" dktx " TlsRxRekeyOk +" dkrx " (expected +" ektx + 0 " +" ekrx + 0 ")"
		if (dktx != ektx || dkrx != ekrx)
			err("/proc/net/tls_stat rekey deltas differ from the EXPECT-REKEY lines")
	} else if (done && ektx + ekrx > 0) {
		err("EXPECT-REKEY lines expect key replacements, but tls_stat has no rekey counters")
	}
	print passed + 0, failed + 0, errors + 0 > totfile
	exit (errors || failed) ? 1 : 0
}
