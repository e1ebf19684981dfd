package server_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	k1ecdsa "github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	"github.com/keyward/keyward/internal/servertest"
)

var ctx = context.Background()

func hashFor(alg azkeys.SignatureAlgorithm) crypto.Hash {
	switch alg {
	case azkeys.SignatureAlgorithmRS384, azkeys.SignatureAlgorithmPS384, azkeys.SignatureAlgorithmES384:
		return crypto.SHA384
	case azkeys.SignatureAlgorithmRS512, azkeys.SignatureAlgorithmPS512, azkeys.SignatureAlgorithmES512:
		return crypto.SHA512
	}
	return crypto.SHA256
}

func digestOf(h crypto.Hash, msg string) []byte {
	d := h.New()
	d.Write([]byte(msg))
	return d.Sum(nil)
}

// verifyWithJWK checks a signature with the standard library (or
// secp256k1) against the public JWK the server returned.
func verifyWithJWK(t *testing.T, k *azkeys.JSONWebKey, alg azkeys.SignatureAlgorithm, digest, sig []byte) bool {
	t.Helper()
	h := hashFor(alg)
	switch *k.Kty {
	case azkeys.KeyTypeRSAHSM:
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: int(new(big.Int).SetBytes(k.E).Int64())}
		if string(alg)[0] == 'P' {
			return rsa.VerifyPSS(pub, h, digest, sig, nil) == nil
		}
		return rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil
	case azkeys.KeyTypeECHSM:
		n := len(sig) / 2
		if *k.Crv == azkeys.CurveNameP256K {
			pub, err := secp256k1.ParsePubKey(append(append([]byte{4}, k.X...), k.Y...))
			if err != nil {
				t.Fatal(err)
			}
			var r, s secp256k1.ModNScalar
			r.SetByteSlice(sig[:n])
			s.SetByteSlice(sig[n:])
			return k1ecdsa.NewSignature(&r, &s).Verify(digest, pub)
		}
		curve := map[azkeys.CurveName]elliptic.Curve{azkeys.CurveNameP256: elliptic.P256(), azkeys.CurveNameP384: elliptic.P384(), azkeys.CurveNameP521: elliptic.P521()}[*k.Crv]
		pub := &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(k.X), Y: new(big.Int).SetBytes(k.Y)}
		return ecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:]))
	}
	t.Fatalf("unexpected kty %s", *k.Kty)
	return false
}

func TestSignVerifyEveryKeyType(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	rsaAlgs := []azkeys.SignatureAlgorithm{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	cases := []struct {
		name   string
		params azkeys.CreateKeyParameters
		algs   []azkeys.SignatureAlgorithm
	}{
		{"rsa-2048", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr(int32(2048)), PublicExponent: to.Ptr(int32(65537))}, rsaAlgs},
		{"rsa-3072", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr(int32(3072))}, rsaAlgs},
		{"rsa-4096", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr(int32(4096))}, rsaAlgs},
		{"ec-p256", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, []azkeys.SignatureAlgorithm{"ES256"}},
		{"ec-p384", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeEC), Curve: to.Ptr(azkeys.CurveNameP384)}, []azkeys.SignatureAlgorithm{"ES384"}},
		{"ec-p521", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP521)}, []azkeys.SignatureAlgorithm{"ES512"}},
		{"ec-p256k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256K)}, []azkeys.SignatureAlgorithm{"ES256K"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			created, err := env.Keys.CreateKey(ctx, c.name, c.params, nil)
			if c.params.Curve != nil && refusedInFIPS(t, string(*c.params.Curve), err) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k := created.Key
			if k.D != nil || k.P != nil || k.K != nil {
				t.Fatal("the response carries private key material")
			}
			if want := azkeys.KeyType(string(*c.params.Kty)); want != *k.Kty && want+"-HSM" != *k.Kty {
				t.Fatalf("kty = %s", *k.Kty)
			}
			for _, alg := range c.algs {
				digest := digestOf(hashFor(alg), "message for "+string(alg))
				res, err := env.Keys.Sign(ctx, c.name, "", azkeys.SignParameters{Algorithm: to.Ptr(alg), Value: digest}, nil)
				if err != nil {
					t.Fatalf("%s: %v", alg, err)
				}
				if *res.KID != *k.KID {
					t.Fatalf("%s: signed by %s, want %s", alg, *res.KID, *k.KID)
				}
				if !verifyWithJWK(t, k, alg, digest, res.Result) {
					t.Fatalf("%s: the standard library rejects the signature", alg)
				}
				v, err := env.Keys.Verify(ctx, c.name, k.KID.Version(), azkeys.VerifyParameters{Algorithm: to.Ptr(alg), Digest: digest, Signature: res.Result}, nil)
				if err != nil || !*v.Value {
					t.Fatalf("%s: server verify = %v, %v", alg, v.Value, err)
				}
				bad := append([]byte(nil), res.Result...)
				bad[0] ^= 0x80
				v, err = env.Keys.Verify(ctx, c.name, "", azkeys.VerifyParameters{Algorithm: to.Ptr(alg), Digest: digest, Signature: bad}, nil)
				if err != nil || *v.Value {
					t.Fatalf("%s: tampered signature verified: %v, %v", alg, v.Value, err)
				}
			}
		})
	}
}

func TestEncryptDecryptWrapUnwrap(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	if _, err := env.Keys.CreateKey(ctx, "rsa", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil); err != nil {
		t.Fatal(err)
	}
	plain := []byte("attack at dawn")
	for _, alg := range []azkeys.EncryptionAlgorithm{"RSA-OAEP", "RSA-OAEP-256", "RSA1_5"} {
		enc, err := env.Keys.Encrypt(ctx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: plain}, nil)
		if refusedInFIPS(t, string(alg), err) {
			// Refused both ways, whatever the input.
			_, err := env.Keys.Decrypt(ctx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: make([]byte, 256)}, nil)
			refusedInFIPS(t, string(alg), err)
			_, err = env.Keys.UnwrapKey(ctx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: make([]byte, 256)}, nil)
			refusedInFIPS(t, string(alg), err)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		dec, err := env.Keys.Decrypt(ctx, "rsa", enc.KID.Version(), azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: enc.Result}, nil)
		if err != nil || !bytes.Equal(dec.Result, plain) {
			t.Fatalf("%s: decrypt = %q, %v", alg, dec.Result, err)
		}
		cek := make([]byte, 32)
		rand.Read(cek)
		w, err := env.Keys.WrapKey(ctx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: cek}, nil)
		if err != nil {
			t.Fatalf("wrap %s: %v", alg, err)
		}
		u, err := env.Keys.UnwrapKey(ctx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: w.Result}, nil)
		if err != nil || !bytes.Equal(u.Result, cek) {
			t.Fatalf("unwrap %s: %x, %v", alg, u.Result, err)
		}
	}
	for _, size := range []int32{128, 192, 256} {
		name := fmt.Sprintf("aes%d", size)
		if _, err := env.Keys.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr(size)}, nil); err != nil {
			t.Fatal(err)
		}
		p := fmt.Sprintf("A%d", size)
		// GCM: the server chooses the IV and returns it with the tag.
		gcm := azkeys.EncryptionAlgorithm(p + "GCM")
		enc, err := env.Keys.Encrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(gcm), Value: plain, AdditionalAuthenticatedData: []byte("ctx")}, nil)
		if err != nil {
			t.Fatalf("%s: %v", gcm, err)
		}
		dec, err := env.Keys.Decrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(gcm), Value: enc.Result,
			IV: enc.IV, AuthenticationTag: enc.AuthenticationTag, AdditionalAuthenticatedData: []byte("ctx")}, nil)
		if err != nil || !bytes.Equal(dec.Result, plain) {
			t.Fatalf("%s: %q, %v", gcm, dec.Result, err)
		}
		// CBC with the caller's IV; CBCPAD pads.
		iv := make([]byte, 16)
		rand.Read(iv)
		for _, mode := range []string{"CBC", "CBCPAD"} {
			alg := azkeys.EncryptionAlgorithm(p + mode)
			in := bytes.Repeat([]byte("0123456789abcdef"), 2)
			if mode == "CBCPAD" {
				in = plain
			}
			enc, err := env.Keys.Encrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: in, IV: iv}, nil)
			if err != nil {
				t.Fatalf("%s: %v", alg, err)
			}
			dec, err := env.Keys.Decrypt(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(alg), Value: enc.Result, IV: iv}, nil)
			if err != nil || !bytes.Equal(dec.Result, in) {
				t.Fatalf("%s: %q, %v", alg, dec.Result, err)
			}
		}
		kw := azkeys.EncryptionAlgorithm(p + "KW")
		cek := make([]byte, 32)
		rand.Read(cek)
		w, err := env.Keys.WrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(kw), Value: cek}, nil)
		if refusedInFIPS(t, string(kw), err) {
			_, err := env.Keys.UnwrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(kw), Value: make([]byte, 40)}, nil)
			refusedInFIPS(t, string(kw), err)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", kw, err)
		}
		u, err := env.Keys.UnwrapKey(ctx, name, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(kw), Value: w.Result}, nil)
		if err != nil || !bytes.Equal(u.Result, cek) {
			t.Fatalf("%s: %x, %v", kw, u.Result, err)
		}
	}
}

func TestImportVersionsRotation(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d, _ := priv.Bytes()
	pub, _ := priv.PublicKey.Bytes()
	imported, err := env.Keys.ImportKey(ctx, "k", azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{
		Kty: to.Ptr(azkeys.KeyTypeEC), Crv: to.Ptr(azkeys.CurveNameP256), D: d, X: pub[1:33], Y: pub[33:],
		KeyOps: []*azkeys.KeyOperation{to.Ptr(azkeys.KeyOperationSign), to.Ptr(azkeys.KeyOperationVerify)},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if imported.Key.D != nil || !bytes.Equal(imported.Key.X, pub[1:33]) {
		t.Fatal("import answered with private material or another key")
	}
	// A signature by the imported key verifies with the caller's own copy.
	digest := digestOf(crypto.SHA256, "imported")
	sig, err := env.Keys.Sign(ctx, "k", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.Verify(&priv.PublicKey, digest, new(big.Int).SetBytes(sig.Result[:32]), new(big.Int).SetBytes(sig.Result[32:])) {
		t.Fatal("signature of the imported key does not verify")
	}

	second, err := env.Keys.CreateKey(ctx, "k", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Keys.UpdateKeyRotationPolicy(ctx, "k", azkeys.KeyRotationPolicy{
		Attributes: &azkeys.KeyRotationPolicyAttributes{ExpiryTime: to.Ptr("P90D")},
		LifetimeActions: []*azkeys.LifetimeAction{{
			Action:  &azkeys.LifetimeActionType{Type: to.Ptr(azkeys.KeyRotationPolicyActionRotate)},
			Trigger: &azkeys.LifetimeActionTrigger{TimeAfterCreate: to.Ptr("P30D")},
		}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	pol, err := env.Keys.GetKeyRotationPolicy(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *pol.Attributes.ExpiryTime != "P90D" || *pol.LifetimeActions[0].Trigger.TimeAfterCreate != "P30D" || pol.Attributes.Created == nil {
		t.Fatalf("rotation policy = %+v", pol)
	}
	rotated, err := env.Keys.RotateKey(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Attributes.Expires == nil || time.Until(*rotated.Attributes.Expires) < 89*24*time.Hour {
		t.Fatalf("rotated version expires %v, want about 90 days from now", rotated.Attributes.Expires)
	}
	latest, err := env.Keys.GetKey(ctx, "k", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *latest.Key.KID != *rotated.Key.KID {
		t.Fatalf("latest = %s, want the rotated version %s", *latest.Key.KID, *rotated.Key.KID)
	}
	var versions []string
	for pg := env.Keys.NewListKeyPropertiesVersionsPager("k", nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Value {
			versions = append(versions, it.KID.Version())
		}
	}
	want := []string{imported.Key.KID.Version(), second.Key.KID.Version(), rotated.Key.KID.Version()}
	if fmt.Sprint(versions) != fmt.Sprint(want) {
		t.Fatalf("versions = %v, want %v", versions, want)
	}
	// An older version still signs when named, and is what the kid says.
	old, err := env.Keys.Sign(ctx, "k", want[0], azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil)
	if err != nil || old.KID.Version() != want[0] {
		t.Fatalf("sign with version 1: %v, %v", old.KID, err)
	}
	// Update: disable the latest; tags replace.
	upd, err := env.Keys.UpdateKey(ctx, "k", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: to.Ptr(false)},
		Tags: map[string]*string{"env": to.Ptr("prod")}}, nil)
	if err != nil || *upd.Attributes.Enabled || *upd.Tags["env"] != "prod" {
		t.Fatalf("update = %+v, %v", upd, err)
	}
	_, err = env.Keys.Sign(ctx, "k", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil)
	expectStatus(t, err, 403, "Forbidden")
}

func expectStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want HTTP %d %s", err, status, code)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("got HTTP %d %s, want %d %s", re.StatusCode, re.ErrorCode, status, code)
	}
}

func TestSoftDeleteRecoverPurge(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	created, err := env.Keys.CreateKey(ctx, "gone", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	del, err := env.Keys.DeleteKey(ctx, "gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *del.RecoveryID != env.Boot.HSMURI+"/deletedkeys/gone" || del.DeletedDate == nil ||
		del.ScheduledPurgeDate.Sub(*del.DeletedDate) != 90*24*time.Hour {
		t.Fatalf("deleted key = %+v", del)
	}
	_, err = env.Keys.GetKey(ctx, "gone", "", nil)
	expectStatus(t, err, 404, "KeyNotFound")
	_, err = env.Keys.CreateKey(ctx, "gone", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM)}, nil)
	expectStatus(t, err, 409, "Conflict")
	if _, err := env.Keys.GetDeletedKey(ctx, "gone", nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for pg := env.Keys.NewListDeletedKeyPropertiesPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 1 {
		t.Fatalf("%d deleted keys listed, want 1", n)
	}
	rec, err := env.Keys.RecoverDeletedKey(ctx, "gone", nil)
	if err != nil || *rec.Key.KID != *created.Key.KID {
		t.Fatalf("recover = %v, %v", rec.Key, err)
	}
	_, err = env.Keys.PurgeDeletedKey(ctx, "gone", nil)
	expectStatus(t, err, 404, "KeyNotFound") // not deleted: nothing to purge
	if _, err := env.Keys.DeleteKey(ctx, "gone", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Keys.PurgeDeletedKey(ctx, "gone", nil); err != nil {
		t.Fatal(err)
	}
	_, err = env.Keys.GetDeletedKey(ctx, "gone", nil)
	expectStatus(t, err, 404, "KeyNotFound")
	if _, err := env.Keys.CreateKey(ctx, "gone", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM)}, nil); err != nil {
		t.Fatalf("the name is free after purge: %v", err)
	}
}

func TestBackupPurgeRestore(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	first, err := env.Keys.CreateKey(ctx, "bk", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := env.Keys.RotateKey(ctx, "bk", nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("before backup"))
	before, err := env.Keys.Sign(ctx, "bk", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmPS256), Value: digest[:]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Keys.BackupKey(ctx, "bk", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Keys.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: b.Value}, nil)
	expectStatus(t, err, 409, "Conflict") // the key still exists
	if _, err := env.Keys.DeleteKey(ctx, "bk", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Keys.PurgeDeletedKey(ctx, "bk", nil); err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), b.Value...)
	tampered[len(tampered)/2] ^= 1
	_, err = env.Keys.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: tampered}, nil)
	expectStatus(t, err, 400, "BadParameter")
	restored, err := env.Keys.RestoreKey(ctx, azkeys.RestoreKeyParameters{KeyBackup: b.Value}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if *restored.Key.KID != *second.Key.KID {
		t.Fatalf("restored %s, want %s", *restored.Key.KID, *second.Key.KID)
	}
	if !verifyWithJWK(t, restored.Key, azkeys.SignatureAlgorithmPS256, digest[:], before.Result) {
		t.Fatal("the restored key does not verify a signature made before the backup")
	}
	after, err := env.Keys.Sign(ctx, "bk", "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil)
	if err != nil || !verifyWithJWK(t, restored.Key, azkeys.SignatureAlgorithmRS256, digest[:], after.Result) {
		t.Fatalf("the restored key does not sign: %v", err)
	}
	if _, err := env.Keys.GetKey(ctx, "bk", first.Key.KID.Version(), nil); err != nil {
		t.Fatalf("the first version was not restored: %v", err)
	}
}

func TestPaging(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	const n = 30 // more than the 25 of a page
	for i := 0; i < n; i++ {
		if _, err := env.Keys.CreateKey(ctx, fmt.Sprintf("p%02d", i), azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeOctHSM), KeySize: to.Ptr(int32(128))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	pages, names := 0, map[string]bool{}
	for pg := env.Keys.NewListKeyPropertiesPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range page.Value {
			if it.KID.Version() != "" {
				t.Fatalf("list items carry versioned kids: %s", *it.KID)
			}
			names[it.KID.Name()] = true
		}
	}
	if pages < 2 || len(names) != n {
		t.Fatalf("%d pages, %d keys; want ≥2 pages and %d keys", pages, len(names), n)
	}
	// maxresults is honoured and carried in the absolute nextLink.
	tok := env.Token(env.Cred, "https://managedhsm.azure.net")
	r := env.Do("GET", "/keys?api-version=7.4&maxresults=7", tok, nil)
	var page struct {
		Value    []map[string]any
		NextLink string
	}
	if err := jsonUnmarshal(r.Body, &page); err != nil || len(page.Value) != 7 {
		t.Fatalf("page = %s", r.Body)
	}
	if want := env.Boot.HSMURI + "/keys?"; len(page.NextLink) < len(want) || page.NextLink[:len(want)] != want {
		t.Fatalf("nextLink = %q", page.NextLink)
	}
	r = env.Do("GET", page.NextLink, tok, nil)
	if err := jsonUnmarshal(r.Body, &page); err != nil || len(page.Value) != 7 || page.Value[0]["kid"] != env.Boot.HSMURI+"/keys/p07" {
		t.Fatalf("second page = %s", r.Body)
	}
}

func TestRandomBytes(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	a, err := env.Keys.GetRandomBytes(ctx, azkeys.GetRandomBytesParameters{Count: to.Ptr(int32(64))}, nil)
	if err != nil || len(a.Value) != 64 {
		t.Fatalf("rng = %d bytes, %v", len(a.Value), err)
	}
	b, err := env.Keys.GetRandomBytes(ctx, azkeys.GetRandomBytesParameters{Count: to.Ptr(int32(64))}, nil)
	if err != nil || bytes.Equal(a.Value, b.Value) {
		t.Fatalf("two draws are equal: %v", err)
	}
}
