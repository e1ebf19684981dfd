package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/spf13/cobra"

	"github.com/keyward/keyward/internal/kmsplugin"
)

// newKMSPluginCmd serves the Kubernetes KMS v2 API on a unix socket, with
// a key of an HSM as the key encryption key. It is an Azure application
// like any other: DefaultAzureCredential (a managed identity, a federated
// token file, or a secret, from the standard AZURE_* variables) and the
// HSM at its Azure name, reached through DNS and the system's roots.
func newKMSPluginCmd(e *env) *cobra.Command {
	var socket, hsm, hsmURL, key string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "kms-plugin",
		Short: "Serve the Kubernetes KMS v2 API on a unix socket, wrapping DEKs with an HSM key",
		Long: `Serve the Kubernetes KMS v2 API (Status, Encrypt, Decrypt) on a unix socket for
the API server's EncryptionConfiguration. The API server's DEK seeds are
wrapped by the HSM with the key named by --key (RSA-OAEP-256 for an RSA
key, A256KW for an AES key); rotating the key is reported through the
status' key id, and DEKs of older versions still decrypt.

The plugin signs in as an Azure application does (DefaultAzureCredential:
AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_CERTIFICATE_PATH, a
PEM holding the certificate and its key; or with AZURE_CLIENT_SECRET, or
AZURE_FEDERATED_TOKEN_FILE; or a managed identity) and needs Managed HSM
Crypto Service Encryption User on the key. It reaches the HSM at https://{hsm}.managedhsm.azure.net: a
server run with serve --azure-names, or Azure's.`,
		Example: `  keyward kms-plugin --socket /var/run/kmsplugin/socket.sock --hsm contoso-hsm --key k8s-secrets`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hsmURL == "" {
				if hsm == "" {
					return usagef("give --hsm (or --hsm-url)")
				}
				hsmURL = "https://" + hsm + ".managedhsm.azure.net"
			}
			if !strings.HasPrefix(hsmURL, "https://") {
				return usagef("--hsm-url must be https://…")
			}
			cred, err := azidentity.NewDefaultAzureCredential(nil)
			if err != nil {
				return fmt.Errorf("kms-plugin: credential: %w", err)
			}
			c, err := azkeys.NewClient(hsmURL, cred, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "kms-plugin: serving KMS v2 on %s with %s/keys/%s\n", socket, hsmURL, key)
			return kmsplugin.Serve(cmd.Context(), socket, kmsplugin.New(c, hsmURL, key, timeout))
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "the unix socket to serve on (the EncryptionConfiguration's endpoint, without unix://)")
	cmd.Flags().StringVar(&hsm, "hsm", "", "the HSM's name: https://{name}.managedhsm.azure.net")
	cmd.Flags().StringVar(&hsmURL, "hsm-url", "", "the HSM's URL, instead of --hsm")
	cmd.Flags().StringVar(&key, "key", "", "the key encryption key's name (RSA or AES)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long one call to the HSM may take")
	required(cmd, "socket", "key")
	return cmd
}
