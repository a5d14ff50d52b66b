//go:build invariants

package raftlog

// invariantsEnabled turns on the self-checks run after every write (CI
// runs the tests with -tags invariants).
const invariantsEnabled = true
