package postgres

import (
	"encoding/json"
	"fmt"
	"time"
)

// Times are stored as Unix seconds, with 0 for "unset": the API exposes
// seconds only, so nothing finer is kept.
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

// fold is the case-insensitive form of a name: ASCII letters lower-cased,
// as SQLite's NOCASE and lower() under the "C" collation (the …_nocase
// columns) do.
func fold(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("postgres: encoding %T: %v", v, err)) // only plain slices and maps reach here
	}
	return string(b)
}

func fromJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("postgres: decoding stored JSON: %w", err)
	}
	return nil
}
