package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestQueryComparesStringsLikeAz(t *testing.T) {
	keys := []map[string]any{
		{"name": "old", "attributes": map[string]any{"expires": "2026-01-01T00:00:00+00:00", "recoverableDays": 90}},
		{"name": "new", "attributes": map[string]any{"expires": "2027-06-01T00:00:00+00:00", "recoverableDays": 7}},
		{"name": "never", "attributes": map[string]any{"expires": nil, "recoverableDays": 28}},
	}
	cases := map[string]string{
		"[?attributes.expires < '2026-12-31'].name":  "old",
		"[?attributes.expires >= '2026-12-31'].name": "new",
		"[?attributes.recoverableDays < `30`].name":  "new\nnever",
		"[?attributes.expires == null].name":         "never",
		"length([?attributes.expires > '2000'])":     "2",
	}
	for q, want := range cases {
		var buf bytes.Buffer
		o := outputFlags{format: "tsv", query: q}
		if err := o.print(&buf, keys); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if got := strings.TrimSpace(buf.String()); got != want {
			t.Errorf("%s = %q, want %q", q, got, want)
		}
	}
}
