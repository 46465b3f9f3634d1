//go:build race

package bench

// raceEnabled builds the binary under test with -race too, so that it
// reuses the packages this test run compiled.
const raceEnabled = true
