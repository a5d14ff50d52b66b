//go:build race

package rebalance

// raceEnabled reports a -race build, whose tests run several times slower.
const raceEnabled = true
