package cli

import (
	"crypto/fips140"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/keys"
	"github.com/keyward/keyward/internal/server"
)

func newServeCmd(e *env) *cobra.Command {
	var cfg server.Config
	var jsonLogs bool
	var pinFile string
	var fips bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Keyward server",
		Long: `Run the Keyward server on one HTTPS listener: the token service, the directory
and the Managed HSM data plane. On first start it creates the data directory,
a private CA, a tenant and a bootstrap administrator, and writes
<data-dir>/bootstrap.json (mode 0600). With --dev it also creates an activated
HSM named "dev" that answers at the bare listen address.

A cluster: run several nodes with the same --database (PostgreSQL), the same
seal (--seal-key-file, or the same PKCS#11 token) and the same --public-url
(the load balancer's address), each with a data directory of its own. The
first node on an empty database bootstraps; the others join. Every node serves
every request; changes reach the others within a second; the rotation
scheduler runs on one node at a time; each node keeps and ships its own audit
journal. Point the balancer's health check at GET /readyz (503 while the node
cannot reach the database, write its audit journal or use its seal). When the
database is unreachable, requests answer 503; nodes serve again by themselves
when it returns. See examples/cluster/haproxy.cfg and the README.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fips && !fips140.Enforced() {
				return reexecInFIPSMode()
			}
			var h slog.Handler = slog.NewTextHandler(e.stderr, nil)
			if jsonLogs {
				h = slog.NewJSONHandler(e.stderr, nil)
			}
			cfg.Log = slog.New(h)
			if !cmd.Flags().Changed("allow-private-endpoints") {
				cfg.AllowPrivateEndpoints = cfg.Dev
			}
			if cfg.AzureNames && !cmd.Flags().Changed("listen") {
				cfg.Listen = "127.0.0.1:443" // --listen :443 serves the network
			}
			if cfg.KeyCacheSize == 0 {
				cfg.KeyCacheSize = -1 // the flag's 0 is no cache; the config's 0 is the default
			}
			if cfg.Profiling && cfg.MetricsListen == "" {
				return usagef("--pprof serves on the metrics listener: give --metrics-listen too")
			}
			if cfg.Seal == "pkcs11" {
				pin, err := readPIN(pinFile)
				if err != nil {
					return err
				}
				cfg.PKCS11.PIN = pin
			}
			if fips140.Enforced() {
				fmt.Fprintf(e.stdout, "FIPS 140-3 mode: Go Cryptographic Module %s, enforced (GODEBUG=fips140=only)\n", fips140.Version())
			}
			return server.Run(cmd.Context(), cfg, e.stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "address to listen on (127.0.0.1:443 with --azure-names)")
	f.StringVar(&cfg.DataDir, "data-dir", "./keyward-data", "the node's own directory: its audit journal, certificates, bootstrap.json and (without --database) the SQLite database")
	f.BoolVar(&cfg.Dev, "dev", false, "create and serve an activated development HSM named dev")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file (default: generated under the data dir)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key file")
	f.StringVar(&cfg.DNSSuffix, "dns-suffix", "mhsm.localhost", "HSMs answer at https://{name}.{suffix}")
	f.BoolVar(&cfg.AzureNames, "azure-names", false,
		"answer at Azure's own names on port 443 (default listen 127.0.0.1:443; login.microsoftonline.com, management.azure.com, graph.microsoft.com, {name}.managedhsm.azure.net) for clients whose DNS sends them here")
	f.BoolVar(&jsonLogs, "log-json", false, "write logs as JSON lines")
	f.StringVar(&cfg.Seal, "seal", "file", "what seals the HSMs' domain keys: file (a key file in the data dir) or pkcs11")
	f.StringVar(&cfg.PKCS11.Module, "pkcs11-module", "", "PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so")
	f.StringVar(&cfg.PKCS11.TokenLabel, "pkcs11-token-label", "", "label of the PKCS#11 token")
	f.StringVar(&cfg.PKCS11.KeyLabel, "pkcs11-key-label", "keyward-seal", "label of the sealing key in the token (created if missing)")
	f.StringSliceVar(&cfg.EventWebhooks, "event-webhook", nil, "URL that receives key events (CloudEvents JSON); repeat for several")
	f.DurationVar(&cfg.RotationInterval, "rotation-interval", time.Minute, "how often rotation policies are checked")
	f.StringVar(&pinFile, "pkcs11-pin-file", "", "file holding the token's user PIN (default: $KEYWARD_PKCS11_PIN)")
	f.StringVar(&cfg.DatabaseURL, "database", os.Getenv("KEYWARD_DATABASE_URL"), "PostgreSQL URL (postgres://…; default $KEYWARD_DATABASE_URL): the store, instead of SQLite in the data dir")
	f.StringVar(&cfg.PublicURL, "public-url", "", "the address clients use, e.g. a load balancer's https://keyward.contoso.net (default: https://{listen})")
	f.StringVar(&cfg.SealKeyFile, "seal-key-file", "", "the file seal's key (default: {data-dir}/seal.key), shared by a cluster's nodes")
	f.StringVar(&cfg.NodeName, "node-name", "", "this node's name in its audit records and logs (default: kept in {data-dir}/node-name, made from the host name)")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address to serve Prometheus metrics on (GET /metrics), e.g. 127.0.0.1:9464")
	f.IntVar(&cfg.KeyCacheSize, "key-cache", keys.DefaultCacheSize, "how many unsealed key versions to keep in memory (a few KiB each; 0: none)")
	f.BoolVar(&cfg.Profiling, "pprof", false, "also serve Go's runtime profiles at /debug/pprof/ on the metrics listener (for measuring; keep it on loopback)")
	f.BoolVar(&fips, "fips", false,
		"run in FIPS 140-3 mode: Go's FIPS 140-3 module only, strictly enforced (GODEBUG=fips140=only); what it does not cover is refused (see the README)")
	f.BoolVar(&cfg.AllowPrivateEndpoints, "allow-private-endpoints", false,
		"let storage endpoints and federated issuers that callers name use http and loopback or private addresses (default: on with --dev, for Azurite); attestation authorities may then be private too, but stay https")
	return cmd
}

// readPIN reads the token PIN from a file or the environment, never from
// a flag, so it stays out of the process list and shell history.
func readPIN(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the PKCS#11 PIN: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if pin := os.Getenv("KEYWARD_PKCS11_PIN"); pin != "" {
		return pin, nil
	}
	return "", usagef("--seal pkcs11 needs the token PIN: --pkcs11-pin-file or $KEYWARD_PKCS11_PIN")
}

// reexecInFIPSMode runs this same command again with Go's FIPS 140-3
// module enforced. Go reads GODEBUG's fips140 setting once, when the
// process starts, so the mode cannot be switched on in a running process.
func reexecInFIPSMode() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--fips: finding this program to run it again: %w", err)
	}
	env := os.Environ()
	godebug := "fips140=only"
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if v != "" {
				godebug = v + "," + godebug // the last setting wins
			}
			env = slices.Delete(env, i, i+1)
			break
		}
	}
	env = append(env, "GODEBUG="+godebug)
	if err := syscall.Exec(exe, os.Args, env); err != nil {
		return fmt.Errorf("--fips: running again in FIPS 140-3 mode: %w", err)
	}
	return nil // not reached
}
