package web

import (
	"strconv"
	"time"
)

// The audit page's chart: requests per hour, stacked by outcome, drawn on
// the server as SVG (no script, no image request).

type hourCount struct {
	Hour    string `json:"hour"`
	Allowed int    `json:"allowed"`
	Refused int    `json:"refused"`
	Errors  int    `json:"error"`
}

type chart struct {
	Width, Height int
	Base          int // the axis's y
	Bars          []bar
	Labels        []label
	Max           int
	Total         [3]int // allowed, refused, error
}

// bar is one segment of an hour's column.
type bar struct {
	X, Y, W, H int
	Fill       string
	Title      string
}

type label struct {
	X      int
	Text   string
	Anchor string // SVG text-anchor: the last label ends at the edge
}

const (
	chartW, chartH = 720, 160
	chartTop       = 10
	chartBottom    = 20 // room for the hour labels
)

// hourChart lays out one column per hour from from to to (at most 31 days:
// 744 columns).
func hourChart(hours []hourCount, from, to time.Time) chart {
	start := from.UTC().Truncate(time.Hour)
	n := int(to.Sub(start)/time.Hour) + 1
	n = max(1, min(n, 744))
	byHour := map[int64]hourCount{}
	c := chart{Width: chartW, Height: chartH, Base: chartH - chartBottom}
	for _, h := range hours {
		t, err := time.Parse(time.RFC3339, h.Hour)
		if err != nil {
			continue
		}
		byHour[t.Unix()] = h
		c.Max = max(c.Max, h.Allowed+h.Refused+h.Errors)
		c.Total[0] += h.Allowed
		c.Total[1] += h.Refused
		c.Total[2] += h.Errors
	}
	plot := chartH - chartTop - chartBottom
	colW := max(1, chartW/n)
	for i := 0; i < n; i++ {
		t := start.Add(time.Duration(i) * time.Hour)
		h := byHour[t.Unix()]
		x := i * chartW / n
		y := chartTop + plot
		for _, seg := range []struct {
			v    int
			fill string
			what string
		}{{h.Allowed, "#107c10", "allowed"}, {h.Refused, "#d83b01", "refused"}, {h.Errors, "#a4262c", "error"}} {
			if seg.v == 0 || c.Max == 0 {
				continue
			}
			ht := max(1, seg.v*plot/c.Max)
			y -= ht
			c.Bars = append(c.Bars, bar{X: x, Y: y, W: max(1, colW-1), H: ht, Fill: seg.fill,
				Title: t.Format("2006-01-02 15:00") + ": " + strconv.Itoa(seg.v) + " " + seg.what})
		}
		if every := max(1, n/8); i%every == 0 && x < chartW-60 {
			c.Labels = append(c.Labels, label{X: x, Text: t.Format("Jan 2 15h"), Anchor: "start"})
		}
	}
	last := start.Add(time.Duration(n-1) * time.Hour)
	c.Labels = append(c.Labels, label{X: chartW, Text: last.Format("Jan 2 15h"), Anchor: "end"})
	return c
}
