package pim

import (
	"testing"
	"time"
)

// TestParseDurationOverflow: a duration that wraps int64 is refused, not
// read as a short one (P585Y was some three weeks).
func TestParseDurationOverflow(t *testing.T) {
	for _, s := range []string{"P585Y", "P2562048H", "P106751D", "PT9223372036S", "P101Y", "P99YT99999999H", "P2147483647Y"} {
		if d, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = %s, want an error", s, d)
		}
	}
	for s, want := range map[string]time.Duration{"P100Y": 100 * 365 * 24 * time.Hour, "PT8H": 8 * time.Hour, "P1DT30M": 24*time.Hour + 30*time.Minute, "PT1.5S": 1500 * time.Millisecond} {
		if d, err := ParseDuration(s); err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", s, d, err, want)
		}
	}
}
