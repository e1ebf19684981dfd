//go:build !unix

package server

// lockDataDir is a no-op where advisory file locks are not available.
func lockDataDir(dir string) (func() error, error) { return func() error { return nil }, nil }
