package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestDemoTour runs the demo's guided tour end to end against a real node
// and checks the outcomes the tour prints.
func TestDemoTour(t *testing.T) {
	cmd := newDemoCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--addr", "127.0.0.1:0", "--http-addr", "", "--exit-after-tour"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		`another client still reads "100"`, // provisional writes invisible
		`now everyone reads Balance:4587`,  // visible after commit
		`"75"`,                             // the committed value
		"commit after expiry: Aborted",     // ttl = abort
		`Balance:4587 is still "75"`,       // aborted writes discarded
		"a write with a wrong code: FailedPrecondition",
		`"nightly-batch" is still held: fence 1`, // a lock survives its server
		"released with its code on the new leader",
		"Tour done.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("tour output lacks %q:\n%s", want, text)
		}
	}
}
