package cli

import "strings"

// An azModel is the attribute list of an Azure SDK model as az prints it.
// az turns a model into a dict with every attribute, None as null
// (azure-cli core/util.py, todict), so a field the service left out still
// prints, as null: a script's --query finds the key either way. A path is
// dotted; "logs[]" applies the rest of the path to each element of logs. A
// parent that is null or absent is left as it is.
type azModel []string

// apply adds the model's missing attributes to m, as null.
func (fields azModel) apply(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	for _, f := range fields {
		fillNull(m, strings.Split(f, "."))
	}
	return m
}

func fillNull(m map[string]any, path []string) {
	k := path[0]
	if list, ok := strings.CutSuffix(k, "[]"); ok {
		switch items := m[list].(type) {
		case []any:
			for _, it := range items {
				if im, ok := it.(map[string]any); ok {
					fillNull(im, path[1:])
				}
			}
		case []map[string]any:
			for _, im := range items {
				fillNull(im, path[1:])
			}
		}
		return
	}
	if len(path) == 1 {
		if _, ok := m[k]; !ok {
			m[k] = nil
		}
		return
	}
	if sub, ok := m[k].(map[string]any); ok {
		fillNull(sub, path[1:])
	}
}

// The models of the resources the CLI prints, as the azure-mgmt-* SDK
// versions of azure-cli 2.6x define them (the same REST specs as the Go
// SDK's armkeyvault v1.5.0, armmsi v1.3.0, armstorage v1.8.1 and
// armauthorization/v2 v2.2.0).
var (
	// managedHSMModel: azure-mgmt-keyvault ManagedHsm, ManagedHsmProperties
	// (keyvault/custom.py, get_vault_or_hsm returns the model).
	managedHSMModel = azModel{"id", "name", "type", "location", "sku", "tags", "systemData", "identity", "properties",
		"properties.createMode", "properties.enablePurgeProtection", "properties.enableSoftDelete",
		"properties.hsmUri", "properties.initialAdminObjectIds", "properties.networkAcls",
		"properties.privateEndpointConnections", "properties.provisioningState", "properties.publicNetworkAccess",
		"properties.regions", "properties.scheduledPurgeDate", "properties.securityDomainProperties",
		"properties.softDeleteRetentionInDays", "properties.statusMessage", "properties.tenantId"}

	// deletedHSMModel: azure-mgmt-keyvault DeletedManagedHsm,
	// DeletedManagedHsmProperties.
	deletedHSMModel = azModel{"id", "name", "type", "properties", "properties.mhsmId", "properties.location",
		"properties.deletionDate", "properties.scheduledPurgeDate", "properties.purgeProtectionEnabled", "properties.tags"}

	// identityModel: azure-mgmt-msi Identity, whose properties the SDK
	// flattens (role/commands.py, identity show is the SDK's get).
	identityModel = azModel{"id", "name", "type", "location", "tags", "systemData", "tenantId", "principalId", "clientId"}

	// storageAccountModel: azure-mgmt-storage StorageAccount, flattened,
	// by its Python attribute names (networkRuleSet for networkAcls,
	// enableHttpsTrafficOnly for supportsHttpsTrafficOnly, enableNfsV3).
	storageAccountModel = azModel{"id", "name", "type", "location", "tags", "extendedLocation", "identity", "kind", "sku",
		"accessTier", "accountMigrationInProgress", "allowBlobPublicAccess", "allowCrossTenantReplication",
		"allowSharedKeyAccess", "allowedCopyScope", "azureFilesIdentityBasedAuthentication", "blobRestoreStatus",
		"creationTime", "customDomain", "defaultToOAuthAuthentication", "dnsEndpointType", "enableExtendedGroups",
		"enableHttpsTrafficOnly", "enableNfsV3", "encryption", "failoverInProgress", "geoReplicationStats",
		"immutableStorageWithVersioning", "isHnsEnabled", "isLocalUserEnabled", "isSftpEnabled", "isSkuConversionBlocked",
		"keyCreationTime", "keyPolicy", "largeFileSharesState", "lastGeoFailoverTime", "minimumTlsVersion",
		"networkRuleSet", "primaryEndpoints", "primaryLocation", "privateEndpointConnections", "provisioningState",
		"publicNetworkAccess", "routingPreference", "sasPolicy", "secondaryEndpoints", "secondaryLocation",
		"statusOfPrimary", "statusOfSecondary", "storageAccountSkuConversionStatus",
		"primaryEndpoints.blob", "primaryEndpoints.dfs", "primaryEndpoints.file", "primaryEndpoints.internetEndpoints",
		"primaryEndpoints.microsoftEndpoints", "primaryEndpoints.queue", "primaryEndpoints.table", "primaryEndpoints.web"}

	// armAssignmentModel: azure-mgmt-authorization RoleAssignment,
	// flattened (role/custom.py, create_role_assignment returns it;
	// list_role_assignments adds principalName and roleDefinitionName).
	// armDefinitionModel: azure-mgmt-authorization RoleDefinition,
	// flattened (properties.type is roleType).
	armDefinitionModel = azModel{"id", "name", "type", "roleName", "description", "roleType", "permissions",
		"assignableScopes", "createdOn", "updatedOn", "createdBy", "updatedBy"}

	armAssignmentModel = azModel{"id", "name", "type", "scope", "roleDefinitionId", "principalId", "principalType",
		"description", "condition", "conditionVersion", "createdOn", "updatedOn", "createdBy", "updatedBy",
		"delegatedManagedIdentityResourceId"}
)

// asModel renders v (one resource or a list of them) as az prints the SDK
// model m.
func asModel(v any, m azModel) (any, error) {
	g, err := toGeneric(v)
	if err != nil {
		return nil, err
	}
	switch x := g.(type) {
	case map[string]any:
		m.apply(x)
	case []any:
		for _, it := range x {
			if o, ok := it.(map[string]any); ok {
				m.apply(o)
			}
		}
	}
	return g, nil
}
