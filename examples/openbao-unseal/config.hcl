# OpenBao (or Vault) auto-unseal with a Keyward HSM key: the stanza is Azure's, unchanged.
# The names resolve to Keyward (README, "At Azure's own names"), and SSL_CERT_FILE names its CA.
# The key must be RSA (the wrapper wraps with RSA-OAEP-256); the principal needs
# Managed HSM Crypto Service Encryption User on it.

storage "raft" {
  path    = "/var/lib/openbao"
  node_id = "bao-1"
}

listener "tcp" {
  address     = "127.0.0.1:8200"
  tls_disable = true
}

seal "azurekeyvault" {
  # tenant_id, client_id and client_secret come from AZURE_TENANT_ID, AZURE_CLIENT_ID and
  # AZURE_CLIENT_SECRET (the secret never in this file; the variables win over the file).
  vault_name = "dev"                  # the HSM's name: https://dev.managedhsm.azure.net
  key_name   = "unseal"
  resource   = "managedhsm.azure.net" # the HSM's DNS suffix, as for Azure Managed HSM
}

api_addr = "http://127.0.0.1:8200"
