//go:build !race

package server_test

// signLimit is the slowest a valid caller's sign may be during a token
// flood: the goal.
const signLimit = 1e9 // 1 s
