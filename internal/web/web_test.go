package web

import (
	"strings"
	"testing"
	"time"
)

// TestArmScope: a scope from a form becomes a path under /subscriptions/
// whose segments cannot climb out or add a query.
func TestArmScope(t *testing.T) {
	for in, want := range map[string]string{
		"/subscriptions/s1/resourceGroups/rg":    "/subscriptions/s1/resourceGroups/rg",
		"/subscriptions/s1/../../v1.0/users":     "/subscriptions/s1/../../v1.0/users", // ".." stays a segment: the front door does not resolve it
		"/subscriptions/s1/x?api-version=1#frag": "/subscriptions/s1/x%3Fapi-version=1%23frag",
		"https://evil.example/subscriptions/s1":  "/subscriptions/-",
		"/v1.0/users":                            "/subscriptions/-",
		"/subscriptions/s1/a b/%2F":              "/subscriptions/s1/a%20b/%252F",
	} {
		if got := armScope(in); got != want {
			t.Errorf("armScope(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHourChart: one column per hour, stacked by outcome, scaled to the
// busiest hour, inside the drawing.
func TestHourChart(t *testing.T) {
	from := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	c := hourChart([]hourCount{
		{Hour: "2026-12-01T02:00:00Z", Allowed: 8, Refused: 2},
		{Hour: "2026-12-01T05:00:00Z", Allowed: 1, Errors: 1},
		{Hour: "not a time", Allowed: 99},
	}, from, from.Add(23*time.Hour))
	if c.Max != 10 || c.Total != [3]int{9, 2, 1} || len(c.Bars) != 4 {
		t.Fatalf("chart: max %d, totals %v, %d bars", c.Max, c.Total, len(c.Bars))
	}
	for _, b := range c.Bars {
		if b.X < 0 || b.X+b.W > c.Width || b.Y < 0 || b.Y+b.H > c.Height || b.H < 1 {
			t.Errorf("a bar outside the drawing: %+v", b)
		}
	}
	if tallest := c.Bars[0].H + c.Bars[1].H; tallest != c.Height-chartTop-chartBottom {
		t.Errorf("the busiest hour is %d high, want the plot's %d", tallest, c.Height-chartTop-chartBottom)
	}
	if empty := hourChart(nil, from, from.Add(-time.Hour)); len(empty.Bars) != 0 || len(empty.Labels) == 0 {
		t.Errorf("an empty chart: %+v", empty)
	}
	// A month is at most 744 columns.
	if long := hourChart(nil, from, from.Add(365*24*time.Hour)); len(long.Labels) > 9 {
		t.Errorf("a year's chart has %d labels", len(long.Labels))
	}
}

func TestKeyType(t *testing.T) {
	n2048 := strings.Repeat("A", 342)
	for _, c := range []struct{ kty, crv, n, want string }{
		{"EC-HSM", "P-256", "", "EC-HSM P-256"}, {"RSA-HSM", "", n2048, "RSA-HSM 2048"},
		{"RSA", "", strings.Repeat("A", 512), "RSA 3072"}, {"oct-HSM", "", "", "oct-HSM"},
	} {
		if got := keyType(c.kty, c.crv, c.n); got != c.want {
			t.Errorf("keyType(%s, %s) = %q, want %q", c.kty, c.crv, got, c.want)
		}
	}
}

func TestPageName(t *testing.T) {
	for in, want := range map[string]string{"/console": "/", "/console/": "/", "/console/access": "/access",
		"/console/hsms/contoso": "/hsms/{name}", "/console/static/console.css": "/static"} {
		if got := pageName(in); got != want {
			t.Errorf("pageName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestAnswerIsBounded: an API answer larger than maxAnswer is cut, not
// read into memory whole.
func TestAnswerIsBounded(t *testing.T) {
	w := &answer{status: 200}
	chunk := make([]byte, 1<<20)
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		_, err = w.Write(chunk)
	}
	if err == nil || w.body.Len() > maxAnswer {
		t.Fatalf("an answer of %d bytes was kept (err %v)", w.body.Len(), err)
	}
}
