package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"

	"encoding/json"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/audit"
)

func newAuditCmd(e *env) *cobra.Command {
	a := &cobra.Command{Use: "audit", Short: "Read and check audit logs (AuditEvent records)"}
	a.AddCommand(auditVerify(e), tableColumns(auditQuery(e), "time", "operationName", "httpStatusCode", "resultType",
		"identity.claim.upn|identity.claim.appid:Caller", "identity.claim.oid:CallerObjectId", "callerIpAddress", "requestUri"))
	return a
}

// offline is a command that needs no server: it runs without a profile.
func offline(e *env, use, short string, setup func(*cobra.Command), run func(ctx context.Context) (any, error)) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := run(cmd.Context())
			if err != nil {
				return err
			}
			if v != nil {
				g, err := toGeneric(v)
				if err != nil {
					return err
				}
				addResourceGroup(g)
				v = g
			}
			if cols := cmd.Annotations["table"]; cols != "" {
				out.columns = strings.Split(cols, ",")
			}
			if out.format == "tsv" || out.format == "table" {
				// Records hold what clients sent: no terminal escape
				// of theirs reaches an auditor's screen.
				g, err := toGeneric(v)
				if err != nil {
					return err
				}
				v = escapeControls(g)
			}
			return out.print(e.stdout, v)
		}}
	setup(cmd)
	out.register(cmd)
	return cmd
}

// escapeControls replaces, in every string of a decoded JSON value, the
// characters that could drive a terminal or reorder what it shows.
func escapeControls(v any) any {
	switch x := v.(type) {
	case string:
		return escapeControlString(x)
	case []any:
		for i := range x {
			x[i] = escapeControls(x[i])
		}
	case map[string]any:
		for k, e := range x {
			x[k] = escapeControls(e)
		}
	}
	return v
}

// escapeControlString writes control characters (C0, DEL, C1) and Unicode
// bidirectional controls as Go escapes: "\x1b", "\u202e".
func escapeControlString(s string) string {
	if !strings.ContainsFunc(s, needsEscape) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !needsEscape(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return unicode.IsControl(r) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f
}

func auditVerify(e *env) *cobra.Command {
	var files, checkpoints []string
	var publicKey string
	cmd := offline(e, "verify", "Check the hash chain of audit journal files (oldest first), and their signed checkpoints; name the first bad record",
		func(cmd *cobra.Command) {
			fl := cmd.Flags()
			fl.StringArrayVar(&files, "file", nil, "journal files of one stream, oldest first (e.g. keyward-data/audit/contoso-hsm.jsonl)")
			fl.StringSliceVar(&checkpoints, "checkpoints", nil, "checkpoint files, or directories of them (default with --public-key: the checkpoints directory beside the first file)")
			fl.StringVar(&publicKey, "public-key", "", "the server's checkpoint public key (keyward-data/audit/checkpoint-public-key.pem; keep a copy apart from the server)")
			required(cmd, "file")
		},
		func(context.Context) (any, error) {
			var all []byte
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return nil, err
				}
				all = append(all, b...)
				if len(b) > 0 && b[len(b)-1] != '\n' {
					all = append(all, '\n')
				}
			}
			// Files delivered to blob storage hold the chains of every node
			// of a cluster, interleaved: each is verified on its own.
			chains, err := audit.SplitChains(bytes.NewReader(all))
			if err != nil {
				return nil, notIntact(err)
			}
			names := slices.Sorted(maps.Keys(chains))
			if len(names) == 0 {
				names, chains = []string{""}, map[string][]byte{"": nil}
			}
			var pub ed25519.PublicKey
			var cps []audit.Checkpoint
			if len(checkpoints) > 0 || publicKey != "" {
				if publicKey == "" {
					return nil, usagef("--checkpoints needs --public-key, the server's checkpoint public key")
				}
				pemData, err := os.ReadFile(publicKey)
				if err != nil {
					return nil, err
				}
				if pub, err = audit.ParsePublicKey(pemData); err != nil {
					return nil, err
				}
				if len(checkpoints) == 0 {
					checkpoints = []string{filepath.Join(filepath.Dir(files[0]), "checkpoints")}
				}
				if cps, err = readCheckpoints(checkpoints); err != nil {
					return nil, err
				}
			}
			var results []map[string]any
			for _, name := range names {
				out, err := verifyChain(chains[name], cps, pub)
				if err != nil {
					if len(names) > 1 {
						return nil, fmt.Errorf("chain %s: %w", name, err)
					}
					return nil, err
				}
				results = append(results, out)
			}
			if len(results) == 1 {
				results[0]["files"] = files
				return results[0], nil
			}
			return map[string]any{"files": files, "intact": true, "chains": results}, nil
		})
	return spaceSeparated(cmd, "file")
}

// verifyChain checks one chain's records, and its checkpoints when pub is
// given.
func verifyChain(records []byte, cps []audit.Checkpoint, pub ed25519.PublicKey) (map[string]any, error) {
	if pub == nil {
		n, err := audit.Verify(bytes.NewReader(records))
		if err != nil {
			return nil, notIntact(err)
		}
		return map[string]any{"records": n, "intact": true,
			"warning": "without --public-key, a cut tail cannot be seen: checkpoints were not checked"}, nil
	}
	rep, err := audit.VerifyCheckpointed(bytes.NewReader(records), cps, pub)
	if err != nil {
		return nil, notIntact(err)
	}
	out := map[string]any{"stream": rep.Stream, "records": rep.Records, "intact": true,
		"checkpoints": rep.Checkpoints, "coveredThrough": rep.CoveredThrough, "uncoveredRecords": rep.Uncovered}
	if rep.Node != "" {
		out["node"] = rep.Node
	}
	if rep.Uncovered > 0 {
		out["warning"] = fmt.Sprintf("records %d to %d are after the last checkpoint: no checkpoint vouches for them yet", rep.Last-rep.Uncovered+1, rep.Last)
	}
	return out, nil
}

// notIntact phrases what audit.Verify or audit.VerifyCheckpointed found.
func notIntact(err error) error {
	var ce *audit.ChainError
	var cpe *audit.CheckpointError
	switch {
	case errors.As(err, &ce):
		return fmt.Errorf("the log is NOT intact: line %d (sequence %d): %s", ce.Line, ce.Sequence, ce.Reason)
	case errors.As(err, &cpe) && cpe.Index != 0:
		return fmt.Errorf("the log is NOT intact: %s: checkpoint %d of stream %s: %s", cpe.Problem, cpe.Index, cpe.Stream, cpe.Reason)
	case errors.As(err, &cpe):
		return fmt.Errorf("the log is NOT intact: %s: stream %s: %s", cpe.Problem, cpe.Stream, cpe.Reason)
	}
	return err
}

// readCheckpoints reads checkpoint files, and in directories (walked) the
// files a server or a shipper writes: *.jsonl and checkpoints.json.
func readCheckpoints(paths []string) ([]audit.Checkpoint, error) {
	var out []audit.Checkpoint
	read := func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		cps, err := audit.ReadCheckpoints(f)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, cps...)
		return nil
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			if err := read(p); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if strings.HasSuffix(path, ".jsonl") || d.Name() == audit.CheckpointBlob {
				return read(path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// queryFilter selects records.
type queryFilter struct {
	since, until      string
	operation, caller string
	result, key       string
	status            int
	sinceT, untilT    time.Time
}

func (f *queryFilter) prepare() error {
	parse := func(s string) (time.Time, error) {
		if d, err := time.ParseDuration(s); err == nil {
			return time.Now().Add(-d), nil
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return time.Time{}, usagef("%q is neither a duration (24h) nor a UTC time (2026-01-02T15:04:05Z)", s)
		}
		return t, nil
	}
	var err error
	if f.since != "" {
		if f.sinceT, err = parse(f.since); err != nil {
			return err
		}
	}
	if f.until != "" {
		if f.untilT, err = parse(f.until); err != nil {
			return err
		}
	}
	return nil
}

func (f *queryFilter) match(e *audit.Event) bool {
	t, _ := time.Parse(audit.TimeLayout, e.Time)
	id := audit.Claims{}
	if e.Identity != nil {
		id = e.Identity.Claim
	}
	switch {
	case !f.sinceT.IsZero() && t.Before(f.sinceT), !f.untilT.IsZero() && t.After(f.untilT):
		return false
	case f.operation != "" && !strings.EqualFold(e.OperationName, f.operation):
		return false
	case f.caller != "" && !strings.EqualFold(id.ObjectID, f.caller) && !strings.EqualFold(id.AppID, f.caller) && !strings.EqualFold(id.UPN, f.caller):
		return false
	case f.result != "" && !strings.EqualFold(e.ResultType, f.result):
		return false
	case f.key != "" && !strings.EqualFold(e.Properties.Key, f.key):
		return false
	case f.status != 0 && e.HTTPStatusCode != f.status:
		return false
	}
	return true
}

func auditQuery(e *env) *cobra.Command {
	var f queryFilter
	var source, account, endpoint, key, sas, resource string
	var files []string
	var challenges bool
	cmd := offline(e, "query", "Search audit records in journal files or in blob storage",
		func(cmd *cobra.Command) {
			fl := cmd.Flags()
			fl.StringVar(&source, "source", "file", "file or blob")
			fl.StringArrayVar(&files, "file", nil, "journal files (source file)")
			fl.StringVar(&account, "storage-account", "", "storage account name (source blob)")
			fl.StringVar(&endpoint, "blob-endpoint", "", "blob service URL (default: the registered account's, from the server)")
			fl.StringVar(&key, "account-key", "", "shared key (default: $AZURE_STORAGE_KEY)")
			fl.StringVar(&sas, "sas-token", "", "SAS token (default: $AZURE_STORAGE_SAS_TOKEN)")
			fl.StringVar(&resource, "resource", "", "only this HSM's records (its resource id)")
			fl.StringVar(&f.since, "since", "", "records from: a duration back (24h) or a UTC time")
			fl.StringVar(&f.until, "until", "", "records up to: a duration back or a UTC time")
			fl.StringVar(&f.operation, "operation", "", "operation name, e.g. KeySign")
			fl.StringVar(&f.caller, "caller", "", "object id, app id or user principal name of the caller")
			fl.StringVar(&f.result, "result", "", "Success or Failure")
			fl.StringVar(&f.key, "key", "", "key name")
			fl.IntVar(&f.status, "status", 0, "HTTP status code")
			fl.BoolVar(&challenges, "include-challenges", false,
				"also the 401 challenges (requests without a token: the first leg of every SDK call), hidden by default")
		},
		func(ctx context.Context) (any, error) {
			if err := f.prepare(); err != nil {
				return nil, err
			}
			var records []audit.Event
			var err error
			switch source {
			case "file":
				if len(files) == 0 {
					return nil, usagef("--file is required with --source file")
				}
				for _, p := range files {
					data, err := os.ReadFile(p)
					if err != nil {
						return nil, err
					}
					records = append(records, parseRecords(data)...)
				}
			case "blob":
				records, err = e.blobRecords(ctx, account, endpoint, key, sas, resource)
				if err != nil {
					return nil, err
				}
			default:
				return nil, usagef("--source must be file or blob")
			}
			out := []audit.Event{}
			hidden := map[string]int{} // challenges hidden, by caller address
			ops := map[string]bool{}
			for i := range records {
				r := &records[i]
				if resource != "" && !strings.EqualFold(r.ResourceID, resource) {
					continue
				}
				ops[r.OperationName] = true
				switch {
				case !f.match(r):
				case r.Properties.Challenge && !challenges && f.status != http.StatusUnauthorized:
					hidden[r.CallerIPAddress]++
				default:
					out = append(out, *r)
				}
			}
			sort.SliceStable(out, func(i, j int) bool { return out[i].Time < out[j].Time })
			if !e.global.onlyShowErrors {
				if f.operation != "" && len(ops) > 0 && !containsFold(ops, f.operation) {
					fmt.Fprintf(e.stderr, "WARNING: no record is of the operation %q; the records' operations are: %s\n", f.operation, strings.Join(slices.Sorted(maps.Keys(ops)), ", "))
				}
				if len(hidden) > 0 {
					// By address: a scanner without a token shows as a
					// source with many, not lost among the SDKs' first legs.
					n, from := 0, []string{}
					for _, addr := range slices.Sorted(maps.Keys(hidden)) {
						n += hidden[addr]
						from = append(from, fmt.Sprintf("%s: %d", addr, hidden[addr]))
					}
					noun := "records"
					if n == 1 {
						noun = "record"
					}
					fmt.Fprintf(e.stderr, "WARNING: %d challenge %s hidden (401 to a request without a token, the first leg of every SDK call; from %s); --include-challenges shows them\n",
						n, noun, strings.Join(from, ", "))
				}
			}
			return out, nil
		})
	return spaceSeparated(cmd, "file")
}

// containsFold tells whether set holds s, regardless of case.
func containsFold(set map[string]bool, s string) bool {
	for k := range set {
		if strings.EqualFold(k, s) {
			return true
		}
	}
	return false
}

func parseRecords(data []byte) []audit.Event {
	var out []audit.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev audit.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// blobRecords reads every record in the account's insights-logs-auditevent
// container (under one HSM's prefix when resource is given).
func (e *env) blobRecords(ctx context.Context, account, endpoint, key, sas, resource string) ([]audit.Event, error) {
	if account == "" {
		return nil, usagef("--storage-account is required with --source blob")
	}
	if endpoint == "" {
		c, err := e.client()
		if err != nil {
			return nil, err
		}
		a, err := c.findAccount(ctx, account)
		if err != nil {
			return nil, err
		}
		props, _ := a["properties"].(map[string]any)
		eps, _ := props["primaryEndpoints"].(map[string]any)
		endpoint, _ = eps["blob"].(string)
	}
	if key == "" && sas == "" {
		key, sas = os.Getenv("AZURE_STORAGE_KEY"), os.Getenv("AZURE_STORAGE_SAS_TOKEN")
	}
	var client *azblob.Client
	var err error
	if key != "" {
		cred, cerr := azblob.NewSharedKeyCredential(account, key)
		if cerr != nil {
			return nil, cerr
		}
		client, err = azblob.NewClientWithSharedKeyCredential(endpoint, cred, nil)
	} else {
		u := endpoint
		if sas != "" {
			u += "?" + strings.TrimPrefix(sas, "?")
		}
		client, err = azblob.NewClientWithNoCredential(u, nil)
	}
	if err != nil {
		return nil, err
	}
	prefix := "resourceId="
	if resource != "" {
		prefix += strings.ToUpper(resource) + "/"
	}
	var out []audit.Event
	pager := client.NewListBlobsFlatPager(audit.Container, &azblob.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if bloberror.HasCode(err, bloberror.ContainerNotFound) {
			return out, nil // nothing delivered yet: the first delivery creates the container
		}
		if bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.AuthorizationFailure, bloberror.NoAuthenticationInformation) {
			return nil, fmt.Errorf("the storage account refused the listing of %s: pass its key (--account-key or $AZURE_STORAGE_KEY) or a SAS token (--sas-token or $AZURE_STORAGE_SAS_TOKEN) that may read it", audit.Container)
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", audit.Container, err)
		}
		for _, b := range page.Segment.BlobItems {
			if strings.HasSuffix(*b.Name, "/"+audit.CheckpointBlob) {
				continue // signed checkpoints, not records
			}
			resp, err := client.DownloadStream(ctx, audit.Container, *b.Name, nil)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", *b.Name, err)
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return nil, err
			}
			out = append(out, parseRecords(data)...)
		}
	}
	return out, nil
}
