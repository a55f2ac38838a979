// Package plural writes counts in error messages: "1 event", "2 events".
package plural

import (
	"strconv"
	"strings"
)

// Of returns n and noun, in the plural unless n is 1: "1 event",
// "2 events", "0 entries".
func Of(n uint64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if stem, ok := strings.CutSuffix(noun, "y"); ok {
		noun = stem + "ie"
	}
	return strconv.FormatUint(n, 10) + " " + noun + "s"
}
