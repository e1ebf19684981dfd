// Package faulttest checks the fault sentinels of the whole module: that
// no two match each other under errors.Is, and that none is left out of
// that check. It has no code of its own; the test may import every
// package that declares a sentinel, which internal/fault cannot.
package faulttest
