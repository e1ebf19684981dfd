// Package testenv starts the outside services tests need — Azurite for
// blob storage, SoftHSM2 for the PKCS#11 seal, PostgreSQL for the
// PostgreSQL store — without building the
// server, so domain packages can test against them. scripts/test installs
// them; a test whose service is missing fails, it never skips.
package testenv
