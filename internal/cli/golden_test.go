package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// shapeOf describes a JSON document's fields, nesting and nulls, one line
// per leaf: "path kind", kind one of string, number, bool, null, [] and {}
// (empty), a list's elements described as path[] (its first element: az's
// lists are of one model).
func shapeOf(t *testing.T, doc string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	var lines []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				lines = append(lines, path+" {}")
			}
			for k, e := range x {
				walk(strings.TrimPrefix(path+"."+k, "."), e)
			}
		case []any:
			if len(x) == 0 {
				lines = append(lines, path+" []")
				return
			}
			walk(path+"[]", x[0])
		case string:
			lines = append(lines, path+" string")
		case float64:
			lines = append(lines, path+" number")
		case bool:
			lines = append(lines, path+" bool")
		case nil:
			lines = append(lines, path+" null")
		default:
			lines = append(lines, fmt.Sprintf("%s %T", path, v))
		}
	}
	walk("", v)
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// golden is a shape written one leaf per line (any order, blank lines and
// indentation ignored).
func golden(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// with is a golden shape plus lines, as a family's variants differ by a
// field or two.
func with(base string, lines ...string) string {
	return golden(base + "\n" + strings.Join(lines, "\n"))
}

func sameShape(t *testing.T, what, out, want string) {
	t.Helper()
	if got := shapeOf(t, out); got != want {
		t.Errorf("%s: the shape differs from az's\n%s", what, lineDiff(got, want))
	}
}

// lineDiff lists the lines only one side has.
func lineDiff(got, want string) string {
	g, w := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			b.WriteString("  extra:   " + l + "\n")
		}
	}
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			b.WriteString("  missing: " + l + "\n")
		}
	}
	return b.String()
}

// Golden shapes of the directory (az ad …). az prints Graph's JSON as
// Graph sends it (role/_msgrpah/_graph_client.py, GraphClient._send: one
// object whole, with @odata.context; a list as its value items), so the
// shapes are Graph v1.0's default properties, as recorded by azure-cli's
// own tests (role/tests/latest/recordings: test_user_scenario.yaml for
// users, test_group_scenario.yaml for groups and group members,
// test_service_principal_scenario.yaml for service principals), and
// create_service_principal_for_rbac's dict (role/custom.py).
const (
	userShape = `businessPhones [] displayName string givenName null id string jobTitle null mail null
		mobilePhone null officeLocation null preferredLanguage null surname null userPrincipalName string`
	groupShape = `classification null createdDateTime string creationOptions [] deletedDateTime null description null
		displayName string expirationDateTime null groupTypes [] id string isAssignableToRole null mail null
		mailEnabled bool mailNickname string membershipRule null membershipRuleProcessingState null
		onPremisesDomainName null onPremisesLastSyncDateTime null onPremisesNetBiosName null
		onPremisesProvisioningErrors [] onPremisesSamAccountName null onPremisesSecurityIdentifier null
		onPremisesSyncEnabled null preferredDataLocation null preferredLanguage null proxyAddresses []
		renewedDateTime string resourceBehaviorOptions [] resourceProvisioningOptions [] securityEnabled bool
		securityIdentifier string serviceProvisioningErrors [] theme null visibility null`
	spShape = `accountEnabled bool addIns [] alternativeNames [] appDescription null appDisplayName string appId string
		appOwnerOrganizationId string appRoleAssignmentRequired bool appRoles [] applicationTemplateId null
		createdDateTime string deletedDateTime null description null disabledByMicrosoftStatus null displayName string
		homepage null id string info.logoUrl null info.marketingUrl null info.privacyStatementUrl null
		info.supportUrl null info.termsOfServiceUrl null keyCredentials [] loginUrl null logoutUrl null notes null
		notificationEmailAddresses [] oauth2PermissionScopes [] preferredSingleSignOnMode null
		preferredTokenSigningKeyThumbprint null replyUrls [] resourceSpecificApplicationPermissions []
		samlSingleSignOnSettings null servicePrincipalNames[] string servicePrincipalType string signInAudience string
		tags [] tokenEncryptionKeyId null verifiedPublisher.addedDateTime null verifiedPublisher.displayName null
		verifiedPublisher.verifiedPublisherId null`
	// A client secret as Graph lists it on its object: never the secret.
	spSecretShape = `passwordCredentials[].customKeyIdentifier null passwordCredentials[].displayName string
		passwordCredentials[].endDateTime string passwordCredentials[].hint string passwordCredentials[].keyId string
		passwordCredentials[].secretText null passwordCredentials[].startDateTime string`
)

// pairs turns "a b c d" into the lines "a b" and "c d".
func pairs(s string) string {
	f := strings.Fields(s)
	var lines []string
	for i := 0; i+1 < len(f); i += 2 {
		lines = append(lines, f[i]+" "+f[i+1])
	}
	return strings.Join(lines, "\n")
}

func TestDirectoryShapesAsAz(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	entity := "@odata.context string"
	user := pairs(userShape)
	sameShape(t, "ad user create", admin.ok("ad", "user", "create", "--display-name", "Alice", "--user-principal-name", "alice@contoso.test",
		"--password", "Correct-Horse-1"), with(user, entity))
	sameShape(t, "ad user show", admin.ok("ad", "user", "show", "--id", "alice@contoso.test"), with(user, entity))
	sameShape(t, "ad user list item", admin.ok("ad", "user", "list", "--upn", "alice@contoso.test", "--query", "[0]"), golden(user))

	group := pairs(groupShape)
	sameShape(t, "ad group create", admin.ok("ad", "group", "create", "--display-name", "Security Team", "--mail-nickname", "security-team"),
		with(group, entity))
	// A second create finds the group by its name (az's list item).
	sameShape(t, "ad group create again", admin.ok("ad", "group", "create", "--display-name", "Security Team", "--mail-nickname", "security-team"),
		golden(group))
	sameShape(t, "ad group show", admin.ok("ad", "group", "show", "-g", "Security Team"), with(group, entity))
	sameShape(t, "ad group list item", admin.ok("ad", "group", "list", "--display-name", "Security", "--query", "[0]"), golden(group))
	alice := admin.ok("ad", "user", "show", "--id", "alice@contoso.test", "--query", "id", "-o", "tsv")
	admin.ok("ad", "group", "member", "add", "-g", "Security Team", "--member-id", alice)
	// A directoryObject collection names each item's type.
	sameShape(t, "ad group member list item", admin.ok("ad", "group", "member", "list", "-g", "Security Team", "--query", "[0]"),
		with(user, "@odata.type string"))
	sameShape(t, "ad group member check", admin.ok("ad", "group", "member", "check", "-g", "Security Team", "--member-id", alice),
		golden("value bool"))

	sameShape(t, "ad sp create-for-rbac", admin.ok("ad", "sp", "create-for-rbac", "--name", "app-vm"),
		golden("appId string\ndisplayName string\npassword string\ntenant string"))
	appID := admin.ok("ad", "sp", "list", "--display-name", "app-vm", "--query", "[0].appId", "-o", "tsv")
	sameShape(t, "ad sp show", admin.ok("ad", "sp", "show", "--id", appID),
		with(pairs(spShape), entity, pairs(spSecretShape)))
	sameShape(t, "ad sp list item", admin.ok("ad", "sp", "list", "--display-name", "app-vm", "--query", "[0]"),
		with(pairs(spShape), "passwordCredentials []"))
}

// Golden shapes of the control plane. az prints an SDK model with every
// attribute, None as null (azure-cli core/util.py, todict), and adds
// resourceGroup to each object whose id names one (core/commands/__init__.py,
// _add_resource_group). The models are azure-mgmt-keyvault's ManagedHsm and
// DeletedManagedHsm (keyvault/custom.py, get_vault_or_hsm; list_deleted),
// azure-mgmt-msi's Identity (role/commands.py: identity show is the SDK's
// get), azure-mgmt-storage's StorageAccount (storage/operations/account.py,
// show_storage_account_usage aside: the SDK's get_properties) and
// azure-mgmt-authorization's RoleAssignment (role/custom.py,
// create_role_assignment; list_role_assignments adds principalName and
// roleDefinitionName). monitor diagnostic-settings is an aaz command
// (monitor/aaz/latest/monitor/diagnostic_settings/_show.py): the service's
// JSON, properties flattened, as the REST spec's DiagnosticSettings_Get
// example answers. account: profile/custom.py, show_subscription (the
// profile's subscription) and list_subscriptions (environmentName renamed
// cloudName), and login prints the list.
func TestControlPlaneShapesAsAz(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	account := `homeTenantId string id string isDefault bool managedByTenants [] name string state string tenantId string
		user.name string user.type string`
	sameShape(t, "account show", admin.ok("account", "show"), with(pairs(account), "environmentName string"))
	sameShape(t, "account list item", admin.ok("account", "list", "--query", "[0]"), with(pairs(account), "cloudName string"))

	hsm := `id string identity null location string name string properties.createMode null
		properties.enablePurgeProtection bool properties.enableSoftDelete bool properties.hsmUri string
		properties.initialAdminObjectIds[] string properties.networkAcls null properties.privateEndpointConnections null
		properties.provisioningState string properties.publicNetworkAccess string properties.regions null
		properties.scheduledPurgeDate null properties.securityDomainProperties.activationStatus string
		properties.securityDomainProperties.activationStatusMessage string properties.softDeleteRetentionInDays number
		properties.statusMessage string properties.tenantId string resourceGroup string sku.family string sku.name string
		systemData null tags {} type string`
	sameShape(t, "keyvault show --hsm-name", admin.ok("keyvault", "show", "--hsm-name", "dev"), golden(pairs(hsm)))
	sameShape(t, "keyvault list item", admin.ok("keyvault", "list", "--query", "[0]"), golden(pairs(hsm)))

	admin.ok("group", "create", "-n", "shape-rg")
	ident := `clientId string id string location string name string principalId string resourceGroup string systemData null
		tags {} tenantId string type string`
	for _, out := range []string{admin.ok("identity", "create", "-n", "shaped", "-g", "shape-rg"),
		admin.ok("identity", "show", "-n", "shaped", "-g", "shape-rg"),
		admin.ok("identity", "list", "-g", "shape-rg", "--query", "[0]")} {
		sameShape(t, "identity", out, golden(pairs(ident)))
	}

	// keywardCredentialKind (key or sas) is Keyward's: a registered
	// account's credential is sealed and never printed (README, differences).
	storage := `accessTier null accountMigrationInProgress null allowBlobPublicAccess null allowCrossTenantReplication null
		allowSharedKeyAccess null allowedCopyScope null azureFilesIdentityBasedAuthentication null blobRestoreStatus null
		creationTime null customDomain null defaultToOAuthAuthentication null dnsEndpointType null
		enableExtendedGroups null enableHttpsTrafficOnly null enableNfsV3 null encryption null extendedLocation null
		failoverInProgress null geoReplicationStats null id string identity null immutableStorageWithVersioning null
		isHnsEnabled null isLocalUserEnabled null isSftpEnabled null isSkuConversionBlocked null keyCreationTime null
		keyPolicy null keywardCredentialKind string kind string largeFileSharesState null lastGeoFailoverTime null
		location string minimumTlsVersion null name string networkRuleSet null primaryEndpoints.blob string
		primaryEndpoints.dfs null primaryEndpoints.file null primaryEndpoints.internetEndpoints null
		primaryEndpoints.microsoftEndpoints null primaryEndpoints.queue null primaryEndpoints.table null
		primaryEndpoints.web null primaryLocation null privateEndpointConnections null provisioningState string
		publicNetworkAccess null resourceGroup string routingPreference null sasPolicy null secondaryEndpoints null
		secondaryLocation null sku.name string sku.tier string statusOfPrimary null statusOfSecondary null
		storageAccountSkuConversionStatus null tags null type string`
	for _, out := range []string{admin.ok("storage", "account", "create", "-n", "shapelogs", "-g", "shape-rg",
		"--blob-endpoint", "http://127.0.0.1:1/shapelogs", "--account-key", "a2V5"),
		admin.ok("storage", "account", "show", "-n", "shapelogs"),
		admin.ok("storage", "account", "list", "--query", "[0]")} {
		sameShape(t, "storage account", out, golden(pairs(storage)))
	}

	hsmID := admin.ok("keyvault", "show", "--hsm-name", "dev", "--query", "id", "-o", "tsv")
	acct := admin.ok("storage", "account", "show", "-n", "shapelogs", "--query", "id", "-o", "tsv")
	diag := `id string logs[].category string logs[].categoryGroup null logs[].enabled bool logs[].retentionPolicy.days number
		logs[].retentionPolicy.enabled bool metrics [] name string resourceGroup string storageAccountId string type string`
	for _, out := range []string{admin.ok("monitor", "diagnostic-settings", "create", "-n", "shape-diag", "--resource", hsmID,
		"--storage-account", acct, "--logs", `[{"category": "AuditEvent", "enabled": true}]`),
		admin.ok("monitor", "diagnostic-settings", "show", "-n", "shape-diag", "--resource", hsmID),
		admin.ok("monitor", "diagnostic-settings", "list", "--resource", hsmID, "--query", "[0]")} {
		sameShape(t, "monitor diagnostic-settings", out, golden(pairs(diag)))
	}

	// role definition list: azure-mgmt-authorization's RoleDefinition,
	// flattened (role/custom.py, list_role_definitions).
	definition := `assignableScopes[] string createdBy null createdOn null description string id string name string
		permissions[].actions[] string permissions[].dataActions [] permissions[].notActions [] permissions[].notDataActions []
		roleName string roleType string type string updatedBy null updatedOn null`
	sameShape(t, "role definition list item", admin.ok("role", "definition", "list", "--name", "Reader", "--query", "[0]"),
		golden(pairs(definition)))

	principal := admin.ok("identity", "show", "-n", "shaped", "-g", "shape-rg", "--query", "principalId", "-o", "tsv")
	assignment := `condition null conditionVersion null createdBy null createdOn string delegatedManagedIdentityResourceId null
		description null id string name string principalId string principalType string resourceGroup string
		roleDefinitionId string scope string type string updatedBy null updatedOn null`
	sameShape(t, "role assignment create", admin.ok("role", "assignment", "create", "--assignee", principal,
		"--role", "Managed HSM Contributor", "-g", "shape-rg"), golden(pairs(assignment)))
	sameShape(t, "role assignment list item", admin.ok("role", "assignment", "list", "-g", "shape-rg", "--query", "[0]"),
		with(pairs(assignment), "principalName string", "roleDefinitionName string"))
	if typ := admin.ok("role", "assignment", "list", "-g", "shape-rg", "--query", "[0].principalType", "-o", "tsv"); typ != "ServicePrincipal" {
		t.Errorf("role assignment principalType: %q", typ)
	}
}

// The data plane's own families. keyvault role assignment and role
// definition print az's reconstruction (keyvault/custom.py,
// _reconstruct_role_assignment: nine fields); key rotation-policy prints
// azure-keyvault-keys' KeyRotationPolicy (keyvault/custom.py,
// get_key_rotation_policy; _transformers.py); the deleted HSM is
// azure-mgmt-keyvault's DeletedManagedHsm (keyvault/custom.py,
// list_deleted_hsm).
func TestHSMFamilyShapesAsAz(t *testing.T) {
	t.Parallel()
	admin, _ := loggedIn(t)
	alice := admin.ok("ad", "user", "create", "--display-name", "Alice", "--user-principal-name", "alice@contoso.test",
		"--password", "Correct-Horse-1", "--query", "id", "-o", "tsv")
	asg := `id string name string principalId string principalName string principalType string roleDefinitionId string
		roleName string scope string type string`
	sameShape(t, "keyvault role assignment create", admin.ok("keyvault", "role", "assignment", "create", "--hsm-name", "dev",
		"--scope", "/keys", "--role", "Managed HSM Crypto User", "--assignee-object-id", alice), golden(pairs(asg)))
	sameShape(t, "keyvault role assignment list item", admin.ok("keyvault", "role", "assignment", "list", "--hsm-name", "dev",
		"--scope", "/keys", "--query", "[0]"), golden(pairs(asg)))

	admin.ok("keyvault", "key", "create", "--hsm-name", "dev", "--name", "rotated", "--kty", "EC-HSM")
	sameShape(t, "keyvault key rotation-policy show", admin.ok("keyvault", "key", "rotation-policy", "show", "--hsm-name", "dev", "--name", "rotated"),
		golden(pairs(`createdOn null expiresIn null id string lifetimeActions [] updatedOn null`)))

	admin.ok("keyvault", "create", "--hsm-name", "shaped", "-g", "keyward", "--administrators", alice, "--retention-days", "7")
	admin.ok("keyvault", "delete", "--hsm-name", "shaped")
	deleted := `id string name string properties.deletionDate string properties.location string properties.mhsmId string
		properties.purgeProtectionEnabled bool properties.scheduledPurgeDate string properties.tags {} type string`
	sameShape(t, "keyvault list-deleted item", admin.ok("keyvault", "list-deleted", "--resource-type", "hsm", "--query", "[0]"),
		golden(pairs(deleted)))
	sameShape(t, "keyvault show-deleted", admin.ok("keyvault", "show-deleted", "--hsm-name", "shaped", "--location", "local"),
		golden(pairs(deleted)))
}
