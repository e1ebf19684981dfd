package cli

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"golang.org/x/term"
)

// untrustedCAHint is what to do when the server's certificate is signed by
// a CA this machine does not trust, as a dev server's is.
const untrustedCAHint = "The server's certificate is signed by a CA this machine does not trust: give login the server's CA " +
	"with --ca-file (keyward serve --dev writes it to keyward-data/ca.pem; bootstrap.json's caFile names it).\n"

// hintFor is the line that says what to do about err, or "".
func hintFor(err error) string {
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &unknownCA) {
		return untrustedCAHint
	}
	return ""
}

// apiHints name the flags for refusals whose wording is Azure's own, which
// the server keeps and which names no flag.
var apiHints = map[string]string{
	"Exportable keys must have release policy.":         "An exportable key needs its release policy: give --policy (JSON, @file or a file) with --exportable.\n",
	"Non-exportable keys must not have release policy.": "A release policy is for an exportable key: give --exportable true with --policy.\n",
}

// signInFailure is a failed client sign-in as one line, the token
// service's error and description, instead of the SDK's fifteen lines of
// request and response (which --debug prints).
func signInFailure(err error) (string, bool) {
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil {
		return "", false
	}
	body, perr := runtime.Payload(afe.RawResponse)
	var te struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if perr != nil || json.Unmarshal(body, &te) != nil || te.Error == "" {
		return "", false
	}
	return fmt.Sprintf("signing in: %s: %s", te.Error, te.Description), true
}

// readSecret reads a password or client secret from r: with echo off and a
// prompt on prompt when r is a terminal, else its first line.
func readSecret(r io.Reader, prompt io.Writer) (string, error) {
	if f, ok := r.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", io.EOF
	}
	return readLine(r)
}
