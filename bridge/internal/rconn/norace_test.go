//go:build !race

package rconn

// raceEnabled reports whether the race detector is on: allocation budgets
// are skipped under it, since it changes what allocates.
const raceEnabled = false
