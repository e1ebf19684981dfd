package cli

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/server"
)

func newServeCmd(e *env) *cobra.Command {
	var cfg server.Config
	var jsonLogs bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Keyward server",
		Long: `Run the Keyward server on one HTTPS listener: the token service, the directory
and the Managed HSM data plane. On first start it creates the data directory,
a private CA, a tenant and a bootstrap administrator, and writes
<data-dir>/bootstrap.json (mode 0600). With --dev it also creates an activated
HSM named "dev" that answers at the bare listen address.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var h slog.Handler = slog.NewTextHandler(e.stderr, nil)
			if jsonLogs {
				h = slog.NewJSONHandler(e.stderr, nil)
			}
			cfg.Log = slog.New(h)
			return server.Run(cmd.Context(), cfg, e.stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "address to listen on")
	f.StringVar(&cfg.DataDir, "data-dir", "./keyward-data", "directory for the database, keys and certificates")
	f.BoolVar(&cfg.Dev, "dev", false, "create and serve an activated development HSM named dev")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file (default: generated under the data dir)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key file")
	f.StringVar(&cfg.DNSSuffix, "dns-suffix", "mhsm.localhost", "HSMs answer at https://{name}.{suffix}")
	f.BoolVar(&jsonLogs, "log-json", false, "write logs as JSON lines")
	return cmd
}
