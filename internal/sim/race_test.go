//go:build race

package sim

// Under the race detector a seed costs about ten times as much: CI's race
// run takes a small set, and scripts/test runs the full set without it.
const defaultSeeds = 40
