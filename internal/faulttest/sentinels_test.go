package faulttest

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keyward/keyward/internal/api/graph"
	"github.com/keyward/keyward/internal/armrbac"
	"github.com/keyward/keyward/internal/attestation"
	"github.com/keyward/keyward/internal/backup"
	"github.com/keyward/keyward/internal/controlplane"
	"github.com/keyward/keyward/internal/diagnostics"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/kcrypto"
	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/pim"
	"github.com/keyward/keyward/internal/rbac"
	"github.com/keyward/keyward/internal/releasepolicy"
	"github.com/keyward/keyward/internal/securitydomain"
	"github.com/keyward/keyward/internal/server"
	"github.com/keyward/keyward/internal/store"
)

const module = "github.com/keyward/keyward"

// sentinels is every package-level sentinel of the module, by the package
// path (below the module) and name that declare it. A new sentinel must be
// added here: TestEverySentinelIsListed finds the ones that are not.
var sentinels = map[string]*fault.Error{
	"internal/api/graph.ErrForbidden":                  graph.ErrForbidden,
	"internal/api/graph.ErrManagedIdentityCredentials": graph.ErrManagedIdentityCredentials,
	"internal/api/graph.ErrNoRoleAssignment":           graph.ErrNoRoleAssignment,

	"internal/armrbac.ErrDenied":             armrbac.ErrDenied,
	"internal/armrbac.ErrAssignmentNotFound": armrbac.ErrAssignmentNotFound,
	"internal/armrbac.ErrAssignmentExists":   armrbac.ErrAssignmentExists,

	"internal/backup.ErrBusy":        backup.ErrBusy,
	"internal/backup.ErrJobNotFound": backup.ErrJobNotFound,
	"internal/backup.ErrBadBackup":   backup.ErrBadBackup,
	"internal/backup.ErrInterrupted": backup.ErrInterrupted,
	"internal/backup.ErrHSMReplaced": backup.ErrHSMReplaced,
	"internal/backup.ErrFIPS":        backup.ErrFIPS,

	"internal/controlplane.ErrGroupNotFound":    controlplane.ErrGroupNotFound,
	"internal/controlplane.ErrIdentityNotFound": controlplane.ErrIdentityNotFound,

	"internal/diagnostics.ErrAccountNotFound": diagnostics.ErrAccountNotFound,
	"internal/diagnostics.ErrSettingNotFound": diagnostics.ErrSettingNotFound,
	"internal/diagnostics.ErrAccountTaken":    diagnostics.ErrAccountTaken,

	"internal/domain.ErrApprovalRequired": domain.ErrApprovalRequired,
	"internal/domain.ErrRequestNotFound":  domain.ErrRequestNotFound,
	"internal/domain.ErrHSMNotFound":      domain.ErrHSMNotFound,
	"internal/domain.ErrWrongState":       domain.ErrWrongState,

	"internal/identity.ErrLockedOut":            identity.ErrLockedOut,
	"internal/identity.ErrNotFound":             identity.ErrNotFound,
	"internal/identity.ErrExists":               identity.ErrExists,
	"internal/identity.ErrInvalidCredentials":   identity.ErrInvalidCredentials,
	"internal/identity.ErrInvalidPassword":      identity.ErrInvalidPassword,
	"internal/identity.ErrInvalidToken":         identity.ErrInvalidToken,
	"internal/identity.ErrBusy":                 identity.ErrBusy,
	"internal/identity.ErrAssertion":            identity.ErrAssertion,
	"internal/identity.ErrInvalidOTP":           identity.ErrInvalidOTP,
	"internal/identity.ErrAuthenticatorInForce": identity.ErrAuthenticatorInForce,
	"internal/identity.ErrInvalidRefreshToken":  identity.ErrInvalidRefreshToken,
	"internal/identity.ErrSecretNotFound":       identity.ErrSecretNotFound,
	"internal/identity.ErrFlow":                 identity.ErrFlow,
	"internal/identity.ErrNoSession":            identity.ErrNoSession,
	"internal/identity.ErrBadRedirectURI":       identity.ErrBadRedirectURI,
	"internal/identity.ErrTooManyAuthCodes":     identity.ErrTooManyAuthCodes,
	"internal/identity.ErrAuthorizationPending": identity.ErrAuthorizationPending,
	"internal/identity.ErrTooManyDeviceCodes":   identity.ErrTooManyDeviceCodes,
	"internal/identity.ErrRedirectURI":          identity.ErrRedirectURI,
	"internal/identity.ErrInvalidGrant":         identity.ErrInvalidGrant,
	"internal/identity.ErrUnknownUserCode":      identity.ErrUnknownUserCode,
	"internal/identity.ErrDeviceCodeExpired":    identity.ErrDeviceCodeExpired,
	"internal/identity.ErrUnknownClient":        identity.ErrUnknownClient,

	"internal/kcrypto.ErrUnsupportedAlgorithm": kcrypto.ErrUnsupportedAlgorithm,
	"internal/kcrypto.ErrDecryption":           kcrypto.ErrDecryption,
	"internal/kcrypto.ErrTransferBlob":         kcrypto.ErrTransferBlob,
	"internal/kcrypto.ErrFIPS":                 kcrypto.ErrFIPS,

	"internal/keys.ErrBadBackup":             keys.ErrBadBackup,
	"internal/keys.ErrKEKOps":                keys.ErrKEKOps,
	"internal/keys.ErrNoKEK":                 keys.ErrNoKEK,
	"internal/keys.ErrKeyNotFound":           keys.ErrKeyNotFound,
	"internal/keys.ErrConflict":              keys.ErrConflict,
	"internal/keys.ErrOperationForbidden":    keys.ErrOperationForbidden,
	"internal/keys.ErrExportableNeedsPolicy": keys.ErrExportableNeedsPolicy,
	"internal/keys.ErrPolicyNeedsExportable": keys.ErrPolicyNeedsExportable,
	"internal/keys.ErrImmutablePolicy":       keys.ErrImmutablePolicy,
	"internal/keys.ErrNotExportable":         keys.ErrNotExportable,
	"internal/keys.ErrPolicyNotSatisfied":    keys.ErrPolicyNotSatisfied,
	"internal/releasepolicy.ErrInvalid":      releasepolicy.ErrInvalid,
	"internal/attestation.ErrToken":          attestation.ErrToken,
	"internal/attestation.ErrNoRuntimeKey":   attestation.ErrNoRuntimeKey,

	"internal/pim.ErrPolicyValidation":       pim.ErrPolicyValidation,
	"internal/pim.ErrAcrsValidation":         pim.ErrAcrsValidation,
	"internal/pim.ErrAssignmentExists":       pim.ErrAssignmentExists,
	"internal/pim.ErrAssignmentDoesNotExist": pim.ErrAssignmentDoesNotExist,
	"internal/pim.ErrInvalidPolicy":          pim.ErrInvalidPolicy,
	"internal/pim.ErrBadRequest":             pim.ErrBadRequest,
	"internal/pim.ErrTargetNotFound":         pim.ErrTargetNotFound,
	"internal/pim.ErrRequestNotFound":        pim.ErrRequestNotFound,
	"internal/pim.ErrScheduleNotFound":       pim.ErrScheduleNotFound,
	"internal/pim.ErrApprovalNotFound":       pim.ErrApprovalNotFound,
	"internal/pim.ErrPolicyNotFound":         pim.ErrPolicyNotFound,
	"internal/pim.ErrNotAllowed":             pim.ErrNotAllowed,
	"internal/pim.ErrAlreadyDecided":         pim.ErrAlreadyDecided,
	"internal/pim.ErrNotCancelable":          pim.ErrNotCancelable,

	"internal/store.ErrUnavailable": store.ErrUnavailable,

	"internal/server.ErrClockSkew": server.ErrClockSkew,

	"internal/rbac.ErrDenied":             rbac.ErrDenied,
	"internal/rbac.ErrRoleNotFound":       rbac.ErrRoleNotFound,
	"internal/rbac.ErrAssignmentNotFound": rbac.ErrAssignmentNotFound,
	"internal/rbac.ErrAssignmentExists":   rbac.ErrAssignmentExists,
	"internal/rbac.ErrPrincipalNotFound":  rbac.ErrPrincipalNotFound,
	"internal/rbac.ErrRoleHasAssignments": rbac.ErrRoleHasAssignments,

	"internal/securitydomain.ErrNoQuorum": securitydomain.ErrNoQuorum,
	"internal/securitydomain.ErrCorrupt":  securitydomain.ErrCorrupt,
}

// TestSentinelsAreDistinct: each sentinel, and each error derived from it,
// matches that sentinel and no other, whatever kinds and codes they share.
func TestSentinelsAreDistinct(t *testing.T) {
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range sentinels {
			if !yield(n) {
				return
			}
		}
	})
	seen := map[*fault.Error]string{}
	for _, n := range names {
		s := sentinels[n]
		if s == nil {
			t.Fatalf("%s is nil", n)
		}
		if other, ok := seen[s]; ok {
			t.Fatalf("%s and %s are one error", n, other)
		}
		seen[s] = n
	}
	cause := errors.New("an internal cause")
	for _, an := range names {
		a := sentinels[an]
		derived := map[string]error{
			"itself":  a,
			"With":    a.With("x"),
			"Wrap":    fault.Wrap(a, cause),
			"%w With": fmt.Errorf("doing: %w", a.With("x")),
		}
		for _, bn := range names {
			b := sentinels[bn]
			for how, err := range derived {
				if got, want := errors.Is(err, b), an == bn; got != want {
					t.Errorf("errors.Is(%s (%s), %s) = %v", an, how, bn, got)
				}
			}
			if errors.Is(b, a.With("x")) {
				t.Errorf("%s matches an error derived from %s", bn, an)
			}
		}
	}
}

// TestEverySentinelIsListed scans the module's non-test Go files for
// package-level variables initialised by a call into package fault (New,
// Errorf, ...) and fails for each one sentinels does not list, so that a new
// sentinel cannot escape TestSentinelsAreDistinct. Derived package-level
// errors (ErrX.With(...)) match their parent by design and are not listed.
func TestEverySentinelIsListed(t *testing.T) {
	root := moduleRoot(t)
	found := map[string]token.Position{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		for _, n := range sentinelDecls(f) {
			found[filepath.ToSlash(rel)+"."+n.Name] = fset.Position(n.Pos())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) < len(sentinels)/2 {
		t.Fatalf("the scan found only %d sentinels under %s: is it reading the module?", len(found), root)
	}
	for n, pos := range found {
		if _, ok := sentinels[n]; !ok {
			pkg, name, _ := strings.Cut(n, ".")
			if !ast.IsExported(name) {
				t.Errorf("%s: the sentinel %s is unexported: export it (callers test for sentinels) and list it in sentinels", pos, n)
				continue
			}
			t.Errorf("%s: the sentinel %s is not listed in sentinels: add %q: %s.%s", pos, n, n, path.Base(pkg), name)
		}
	}
	for n := range sentinels {
		if _, ok := found[n]; !ok {
			t.Errorf("sentinels lists %s, which the scan did not find declared by a call into package fault", n)
		}
	}
}

// sentinelDecls returns the names of f's package-level variables whose value
// is a call of a function of package fault.
func sentinelDecls(f *ast.File) []*ast.Ident {
	local := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == module+"/internal/fault" {
			local = "fault"
			if imp.Name != nil {
				local = imp.Name.Name
			}
		}
	}
	if local == "" || local == "_" {
		return nil
	}
	var out []*ast.Ident
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, v := range vs.Values {
				call, ok := ast.Unparen(v).(*ast.CallExpr)
				if !ok {
					continue
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					continue
				}
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == local && i < len(vs.Names) && vs.Names[i].Name != "_" {
					out = append(out, vs.Names[i])
				}
			}
		}
	}
	return out
}

// TestSentinelDecls: the scan sees a renamed import and grouped and
// single declarations, and ignores derived errors, locals and other
// packages' calls.
func TestSentinelDecls(t *testing.T) {
	src := `package p

import (
	"errors"
	f "github.com/keyward/keyward/internal/fault"
)

var ErrA = f.New(f.NotFound, "A", "a")

var (
	ErrB, ErrC = f.New(f.Conflict, "B", "b"), f.Errorf(f.Invalid, "C", "c %d", 1)
	errD       = (f.Invalidf("d"))
	ErrDerived = ErrA.With("more")
	ErrPlain   = errors.New("plain")
	_          = f.New(f.Internal, "", "blank")
)

func g() { var ErrLocal = f.New(f.NotFound, "L", "l"); _ = ErrLocal }
`
	file, err := parser.ParseFile(token.NewFileSet(), "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range sentinelDecls(file) {
		got = append(got, n.Name)
	}
	if want := []string{"ErrA", "ErrB", "ErrC", "errD"}; !slices.Equal(got, want) {
		t.Fatalf("found %v, want %v", got, want)
	}
}

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
