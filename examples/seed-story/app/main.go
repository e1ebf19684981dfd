// Command app is the seed story's workloads, written as an application
// would be with the Azure SDK for Go: it signs in with
// azidentity.ManagedIdentityCredential (served by `keyward identity agent`
// through IDENTITY_ENDPOINT and IDENTITY_HEADER) and uses azkeys.
//
//	app -hsm URL -ca FILE sign           the application signs and verifies
//	app -hsm URL -ca FILE app-refusals   ... and cannot purge or grant roles
//	app -hsm URL -ca FILE wrap           the storage identity wraps and unwraps a data key
//	app -hsm URL -ca FILE storage-refusals ... and cannot sign or decrypt
//
// -dial sends *.localhost names to the server's address, for machines
// whose resolver does not map them to loopback.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func main() {
	hsm := flag.String("hsm", "", "the HSM's URL, https://{name}.mhsm.localhost:{port}")
	caFile := flag.String("ca", "", "the server's CA (keyward-data/ca.pem)")
	dial := flag.String("dial", "", "address to dial for *.localhost names")
	key := flag.String("key", "app-signing", "the key to use")
	flag.Parse()
	if *hsm == "" || *caFile == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: app -hsm URL -ca FILE [-dial ADDR] [-key NAME] sign|app-refusals|wrap|storage-refusals")
		os.Exit(2)
	}
	if err := run(context.Background(), *hsm, *caFile, *dial, *key, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, hsm, caFile, dial, key, mode string) error {
	hc, err := httpClient(caFile, dial)
	if err != nil {
		return err
	}
	// The application's configuration holds no secret: only where the
	// identity endpoint is, which the agent printed.
	cred, err := azidentity.NewManagedIdentityCredential(nil)
	if err != nil {
		return err
	}
	kc, err := azkeys.NewClient(hsm, cred, &azkeys.ClientOptions{
		ClientOptions:                        azcore.ClientOptions{Transport: hc, Retry: policy.RetryOptions{MaxRetries: -1}},
		DisableChallengeResourceVerification: true,
	})
	if err != nil {
		return err
	}
	switch mode {
	case "sign":
		return sign(ctx, kc, key)
	case "app-refusals":
		return appRefusals(ctx, kc, cred, hc, hsm, key)
	case "wrap":
		return wrap(ctx, kc, key)
	case "storage-refusals":
		return storageRefusals(ctx, kc, key)
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func sign(ctx context.Context, kc *azkeys.Client, key string) error {
	digest := sha256.Sum256([]byte("invoice 2026-11-27 #4711"))
	resp, err := kc.Sign(ctx, key, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil)
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	// Verify locally with the public key, as a relying party would.
	pub, err := kc.GetKey(ctx, key, "", nil)
	if err != nil {
		return fmt.Errorf("reading the public key: %w", err)
	}
	rsaPub := &rsa.PublicKey{N: new(big.Int).SetBytes(pub.Key.N), E: int(new(big.Int).SetBytes(pub.Key.E).Int64())}
	if err := rsa.VerifyPKCS1v15(rsaPub, crypto.SHA256, digest[:], resp.Result); err != nil {
		return fmt.Errorf("the signature does not verify: %w", err)
	}
	fmt.Printf("signed with %s (RS256, %d-byte signature), verified with the public key\n", *resp.KID, len(resp.Result))
	return nil
}

// refused runs op and succeeds only if the HSM refused it with 403.
func refused(what string, op func() error) error {
	err := op()
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode == http.StatusForbidden {
		fmt.Printf("refused as expected: %s (403 %s)\n", what, re.ErrorCode)
		return nil
	}
	if err == nil {
		return fmt.Errorf("NOT REFUSED: %s was allowed", what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func appRefusals(ctx context.Context, kc *azkeys.Client, cred azcore.TokenCredential, hc *http.Client, hsm, key string) error {
	// Azure's Crypto User includes keys/delete (a soft delete, recoverable
	// by the security team); purging and granting are what it lacks.
	if err := refused("the app purges "+key, func() error { _, err := kc.PurgeDeletedKey(ctx, key, nil); return err }); err != nil {
		return err
	}
	// Role changes have no azkeys call; the app sends the REST request.
	return refused("the app grants itself Managed HSM Administrator", func() error {
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://managedhsm.azure.net/.default"}})
		if err != nil {
			return err
		}
		body := `{"properties":{"roleDefinitionId":"Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/a290e904-7015-4bba-90c8-60543313cdb4","principalId":"00000000-0000-0000-0000-000000000001"}}`
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut,
			hsm+"/providers/Microsoft.Authorization/roleAssignments/6b1e7c49-7a4b-4c5e-9a83-3f0c8a7f0a11?api-version=7.6", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode < 300 {
			return nil
		}
		return &azcore.ResponseError{StatusCode: resp.StatusCode, ErrorCode: "Forbidden", RawResponse: resp}
	})
}

func wrap(ctx context.Context, kc *azkeys.Client, key string) error {
	dek := make([]byte, 32)
	rand.Read(dek)
	alg := to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256)
	w, err := kc.WrapKey(ctx, key, "", azkeys.KeyOperationParameters{Algorithm: alg, Value: dek}, nil)
	if err != nil {
		return fmt.Errorf("wrapping: %w", err)
	}
	u, err := kc.UnwrapKey(ctx, key, "", azkeys.KeyOperationParameters{Algorithm: alg, Value: w.Result}, nil)
	if err != nil {
		return fmt.Errorf("unwrapping: %w", err)
	}
	if !bytes.Equal(u.Result, dek) {
		return errors.New("the unwrapped data key differs")
	}
	fmt.Printf("wrapped a 256-bit data key with %s (RSA-OAEP-256) and unwrapped it\n", *w.KID)
	return nil
}

func storageRefusals(ctx context.Context, kc *azkeys.Client, key string) error {
	digest := sha256.Sum256([]byte("x"))
	if err := refused("the storage identity signs with "+key, func() error {
		_, err := kc.Sign(ctx, key, "", azkeys.SignParameters{Algorithm: to.Ptr(azkeys.SignatureAlgorithmRS256), Value: digest[:]}, nil)
		return err
	}); err != nil {
		return err
	}
	return refused("the storage identity decrypts with "+key, func() error {
		_, err := kc.Decrypt(ctx, key, "", azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: make([]byte, 384)}, nil)
		return err
	})
}

func httpClient(caFile, dial string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(addr); dial != "" && strings.HasSuffix(host, ".localhost") {
				addr = dial
			}
			return d.DialContext(ctx, network, addr)
		}}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}
