package securitydomain

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"testing"
)

// FuzzOpenRestoreBlob feeds arbitrary upload bodies (the restore blob an
// HSM in recovery receives from a client) to the parser and opener: it
// must never panic, and only the genuine blob may open.
func FuzzOpenRestoreBlob(f *testing.F) {
	var keys []*rsa.PrivateKey
	var certs = make([]*x509.Certificate, 0, 3)
	for range 3 {
		k, c := newCustodian(f)
		keys, certs = append(keys, k), append(certs, c)
	}
	exKey, exCert := newCustodian(f)
	file, err := Seal(rand.Reader, map[string][]byte{"hsm_backup": []byte(`{"format":1}`)}, certs, 2)
	if err != nil {
		f.Fatal(err)
	}
	blob, err := RestoreBlobFor(rand.Reader, file, keys[:2], exCert)
	if err != nil {
		f.Fatal(err)
	}
	genuine, _ := json.Marshal(blob)
	f.Add(genuine)
	f.Add([]byte(`{"EncData":{"data":[],"kdf":"sp108_kdf"},"WrappedKey":{"enc_key":"a.b.c.d.e","x5t_256":""}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, text []byte) {
		var b RestoreBlob
		if json.Unmarshal(text, &b) != nil {
			return
		}
		items, err := OpenRestoreBlob(&b, exKey, exCert)
		if err == nil && string(items["hsm_backup"]) != `{"format":1}` {
			t.Fatalf("a forged blob opened: %q", items)
		}
	})
}
