// Package odata reads the small part of OData's $filter that Azure's list
// operations take: a few comparisons and functions joined by "and".
package odata

import (
	"regexp"
	"strings"

	"github.com/keyward/keyward/internal/fault"
)

// MaxFilter bounds a $filter: the expressions Azure's clients send are
// short, and each term is matched by regular expressions.
const MaxFilter = 1024

var and = regexp.MustCompile(`(?i)\s+and\s+`)

// Terms splits a $filter on "and", trimming each term. An empty filter has
// no terms; one longer than MaxFilter is refused as bad input.
func Terms(filter string) ([]string, error) {
	if len(filter) > MaxFilter {
		return nil, fault.Invalidf("$filter is longer than %d characters", MaxFilter)
	}
	filter = strings.TrimSpace(filter)
	if filter == "" {
		return nil, nil
	}
	terms := and.Split(filter, -1)
	for i := range terms {
		terms[i] = strings.TrimSpace(terms[i])
	}
	return terms, nil
}

// Unquote reads an OData string literal's content, in which a quote is
// doubled.
func Unquote(s string) string { return strings.ReplaceAll(s, "''", "'") }
