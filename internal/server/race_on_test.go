//go:build race

package server_test

// signLimit is the slowest a valid caller's sign may be during a token
// flood. The race detector slows Argon2 and the whole process several
// times over, so under -race only a loose bound holds; scripts/test also
// runs the flood test without -race, where the 1 s goal is checked.
const signLimit = 3e9 // 3 s
