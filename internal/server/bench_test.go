package server_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/servertest"
	"github.com/keyward/keyward/internal/testenv"
)

// BenchmarkSign compares signing through the whole path (azkeys client,
// HTTPS, token check, authorization, JSON, the key cache) with the raw
// standard-library call on the same cores. Both run in parallel on every
// core, so the ratio of their ns/op is the throughput ratio.
//
//	go test ./internal/server -run '^$' -bench Sign -benchtime 3s
func BenchmarkSign(b *testing.B) {
	digest := sha256.Sum256([]byte("benchmark"))
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	b.Run("RSA-2048/raw", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := rsa.SignPKCS1v15(nil, rsaKey, crypto.SHA256, digest[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("EC-P256/raw", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := ecdsa.SignASN1(rand.Reader, ecKey, digest[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	})

	env := servertest.Start(b)
	for _, c := range []struct {
		name string
		p    azkeys.CreateKeyParameters
		alg  azkeys.SignatureAlgorithm
	}{
		{"RSA-2048/https", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSAHSM), KeySize: to.Ptr(int32(2048))}, azkeys.SignatureAlgorithmRS256},
		{"EC-P256/https", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM), Curve: to.Ptr(azkeys.CurveNameP256)}, azkeys.SignatureAlgorithmES256},
	} {
		name := "bench-" + string(c.alg)
		if _, err := env.Keys.CreateKey(ctx, name, c.p, nil); err != nil {
			b.Fatal(err)
		}
		params := azkeys.SignParameters{Algorithm: to.Ptr(c.alg), Value: digest[:]}
		if _, err := env.Keys.Sign(ctx, name, "", params, nil); err != nil { // warm token and cache
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetParallelism(4) // enough requests in flight to keep both sides busy
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := env.Keys.Sign(ctx, name, "", params, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkSignAudit measures what the audit log costs on the P-256 sign
// path: no audit, the file journal, and the journal shipped to blob
// storage (Azurite) behind the request path.
//
//	go test ./internal/server -run '^$' -bench SignAudit -benchtime 3s
func BenchmarkSignAudit(b *testing.B) {
	digest := sha256.Sum256([]byte("benchmark"))
	params := azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}
	run := func(b *testing.B, env *servertest.Env) {
		if _, err := env.Keys.CreateKey(ctx, "bench", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := env.Keys.Sign(ctx, "bench", "", params, nil); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := env.Keys.Sign(ctx, "bench", "", params, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("none", func(b *testing.B) {
		run(b, servertest.StartWith(b, b.TempDir(), func(c *server.Config) { c.NoAuditForBenchmarks = true }))
	})
	b.Run("file", func(b *testing.B) { run(b, servertest.Start(b)) })
	b.Run("file+blob", func(b *testing.B) {
		az := testenv.StartAzurite(b)
		env := servertest.Start(b)
		enableBlobLogging(b, env, az)
		run(b, env)
	})
}

// BenchmarkEngines compares a node on SQLite with one on PostgreSQL:
// signing (the hot path reads no database once the key is cached, so the
// two should be within a few percent) and key creation (one write
// transaction each, where the engines differ).
func BenchmarkEngines(b *testing.B) {
	digest := sha256.Sum256([]byte("benchmark"))
	params := azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}
	engines := []struct {
		name      string
		configure func(*server.Config)
	}{
		{"sqlite", func(c *server.Config) {}},
		{"postgres", func(c *server.Config) { c.DatabaseURL = testenv.StartPostgres(b) }},
	}
	for _, e := range engines {
		b.Run("sign/"+e.name, func(b *testing.B) {
			env := servertest.StartWith(b, b.TempDir(), e.configure)
			if _, err := env.Keys.CreateKey(ctx, "bench", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := env.Keys.Sign(ctx, "bench", "", params, nil); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := env.Keys.Sign(ctx, "bench", "", params, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		b.Run("create/"+e.name, func(b *testing.B) {
			env := servertest.StartWith(b, b.TempDir(), e.configure)
			var n atomic.Int64
			b.ResetTimer()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					name := fmt.Sprintf("k%d", n.Add(1))
					if _, err := env.Keys.CreateKey(ctx, name, azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeECHSM)}, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
