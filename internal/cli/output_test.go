package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"
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

// Rendering follows knack (knack/output.py: format_tsv, _TsvOutput,
// format_table, _TableOutput): a list prints one row per item; in a row,
// cells are Python's str() — True, False, None — a nested list prints its
// length and a nested object nothing, so columns never shift, and a row
// that is one bool prints true or false; objects print their
// values in sorted key order, but a query's multi-select hash keeps the
// order written (az evaluates with OrderedDict); a query that yields null
// prints nothing at all. Tables (_TableOutput) drop id, type, etag, nulls
// and non-scalars, capitalise the first letter, and (tabulate "simple")
// rule each column as wide as it is.
func TestRenderingFollowsKnack(t *testing.T) {
	hsm := map[string]any{"name": "contoso", "id": "/subscriptions/s/x", "type": "Microsoft.KeyVault/managedHSMs",
		"location": "local", "enabled": true, "purged": false, "deleted": nil, "retention": 90,
		"tags": map[string]any{"env": "prod"}, "admins": []any{"a", "b", "c"}}
	cases := []struct {
		name, format, query string
		in                  any
		want                string
	}{
		{"tsv sorted values", "tsv", "", hsm,
			"3\tNone\tTrue\t/subscriptions/s/x\tlocal\tcontoso\tFalse\t90\t\tMicrosoft.KeyVault/managedHSMs\n"},
		{"tsv query keeps the order written", "tsv", "{z: name, a: location, m: enabled}", hsm, "contoso\tlocal\tTrue\n"},
		{"tsv list projection", "tsv", "[].{n: name, on: enabled}", []any{hsm, hsm}, "contoso\tTrue\ncontoso\tTrue\n"},
		{"tsv a top-level list is one row per item", "tsv", "[name, retention, deleted]", hsm, "contoso\n90\nNone\n"},
		{"tsv a list row is its items", "tsv", "[[name, retention, deleted]]", hsm, "contoso\t90\tNone\n"},
		{"tsv a list cell is its length, an object nothing", "tsv", "[[admins, tags, name]]", hsm, "3\t\tcontoso\n"},
		{"tsv scalars one per line", "tsv", "admins", hsm, "a\nb\nc\n"},
		{"tsv a row of one bool is lower case", "tsv", "purged", hsm, "false\n"},
		{"tsv a bool among others is not", "tsv", "{a: purged, b: name}", hsm, "False\tcontoso\n"},
		{"a null result prints nothing", "tsv", "deleted", hsm, ""},
		{"a null result prints nothing in json", "json", "nosuchfield", hsm, ""},
		{"an empty list prints nothing in tsv", "tsv", "[?name=='x']", []any{hsm}, ""},
		{"table drops id, type, nulls and non-scalars", "table", "", hsm,
			"Enabled  Location  Name     Purged  Retention\n" +
				"-------  --------  -------  ------  ---------\n" +
				"True     local     contoso  False   90       \n"},
		{"table of a query keeps its order", "table", "[].{Zone: location, Name: name}", []any{hsm},
			"Zone   Name   \n-----  -------\nlocal  contoso\n"},
		{"table of a list of lists", "table", "[[name, location]]", hsm,
			"Column1  Column2\n-------  -------\ncontoso  local  \n"},
		{"table of a multi-select list is a Result per item", "table", "[name, location]", hsm,
			"Result \n-------\ncontoso\nlocal  \n"},
		{"table of a scalar", "table", "name", hsm, "Result \n-------\ncontoso\n"},
		// _TableOutput.dump: no rows, no header, the newline after.
		{"table of an empty list is an empty line", "table", "[?name=='x']", []any{hsm}, "\n"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		o := outputFlags{format: c.format, query: c.query}
		if err := o.print(&buf, c.in); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if buf.String() != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.name, buf.String(), c.want)
		}
	}
}

// The date-times az's keyvault commands take (_validators.py,
// datetime_type), and RFC 3339 with an offset.
func TestParseUTC(t *testing.T) {
	want := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, in := range []string{"2030-01-01", "2030-01-01T00Z", "2030-01-01T00:00Z", "2030-01-01T00:00:00Z", "2030-01-01T01:00:00+01:00"} {
		if got, err := parseUTC(in); err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "2030-13-01", "tomorrow", "2030/01/01"} {
		if _, err := parseUTC(in); err == nil || !strings.Contains(err.Error(), "Valid example") {
			t.Errorf("%q: %v", in, err)
		}
	}
}
