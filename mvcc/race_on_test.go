//go:build race

package mvcc

// raceEnabled reports a -race build, whose tests run about 20x slower.
const raceEnabled = true
