package server_test

import (
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/keyvault/armkeyvault"

	"github.com/keyward/keyward/internal/servertest"
)

func subscriptionOf(t *testing.T, env *servertest.Env) string {
	var subs struct {
		Value []struct{ SubscriptionID string }
	}
	must(t, jsonUnmarshal(env.Do("GET", env.Boot.AuthorityHost+"subscriptions?api-version=2022-12-01", env.AdminToken("https://management.azure.com"), nil).Body, &subs))
	return subs.Value[0].SubscriptionID
}

// TestArmkeyvaultSDK drives the managedHSMs API with the real armkeyvault
// v1.5.0 client: create (a long-running operation), get, list, update
// tags, delete.
func TestArmkeyvaultSDK(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	sub := subscriptionOf(t, env)
	me := jsonField(env.Graph("GET", "/servicePrincipals/"+env.Boot.ClientID, nil).Body, "id")
	opts := &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: env.HTTP, Cloud: cloud.Configuration{
		ActiveDirectoryAuthorityHost: env.Boot.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {
			Endpoint: strings.TrimSuffix(env.Boot.ManagementURI, "/"), Audience: "https://management.azure.com/"}}}}}
	client, err := armkeyvault.NewManagedHsmsClient(sub, env.Cred, opts)
	must(t, err)
	poller, err := client.BeginCreateOrUpdate(ctx, "keyward", "sdk-hsm", armkeyvault.ManagedHsm{
		Location: to.Ptr("local"), SKU: &armkeyvault.ManagedHsmSKU{Family: to.Ptr(armkeyvault.ManagedHsmSKUFamilyB), Name: to.Ptr(armkeyvault.ManagedHsmSKUNameStandardB1)},
		Properties: &armkeyvault.ManagedHsmProperties{InitialAdminObjectIDs: []*string{to.Ptr(me)}, SoftDeleteRetentionInDays: to.Ptr(int32(7)),
			TenantID: to.Ptr(env.Boot.TenantID)}}, nil)
	must(t, err)
	created, err := poller.PollUntilDone(ctx, nil)
	must(t, err)
	if *created.Properties.ProvisioningState != armkeyvault.ProvisioningStateSucceeded || !strings.HasPrefix(*created.Properties.HsmURI, "https://sdk-hsm.") ||
		*created.Properties.SecurityDomainProperties.ActivationStatus != armkeyvault.ActivationStatusNotActivated {
		t.Fatalf("created = %+v", created.Properties)
	}
	got, err := client.Get(ctx, "keyward", "sdk-hsm", nil)
	must(t, err)
	if *got.ID != *created.ID || *got.Properties.SoftDeleteRetentionInDays != 7 {
		t.Fatalf("get = %+v", got)
	}
	names := map[string]bool{}
	for pg := client.NewListBySubscriptionPager(nil); pg.More(); {
		page, err := pg.NextPage(ctx)
		must(t, err)
		for _, h := range page.Value {
			names[*h.Name] = true
		}
	}
	if !names["sdk-hsm"] || !names["dev"] {
		t.Fatalf("listed %v", names)
	}
	upd, err := client.BeginUpdate(ctx, "keyward", "sdk-hsm", armkeyvault.ManagedHsm{Tags: map[string]*string{"env": to.Ptr("test")}}, nil)
	must(t, err)
	updated, err := upd.PollUntilDone(ctx, nil)
	must(t, err)
	if *updated.Tags["env"] != "test" {
		t.Fatalf("tags = %v", updated.Tags)
	}
	del, err := client.BeginDelete(ctx, "keyward", "sdk-hsm", nil)
	must(t, err)
	_, err = del.PollUntilDone(ctx, nil)
	must(t, err)
	if _, err := client.Get(ctx, "keyward", "sdk-hsm", nil); err == nil {
		t.Fatal("the deleted HSM is still there")
	}
	gone, err := client.GetDeleted(ctx, "sdk-hsm", "local", nil)
	must(t, err)
	if *gone.Properties.MhsmID != *created.ID {
		t.Fatalf("deleted = %+v", gone.Properties)
	}
	// The name stays taken until the deleted HSM is purged.
	r := env.Do("PUT", env.Boot.AuthorityHost+"subscriptions/"+sub+"/resourceGroups/keyward/providers/Microsoft.KeyVault/managedHSMs/sdk-hsm?api-version=2024-11-01",
		env.AdminToken("https://management.azure.com"), map[string]any{"location": "local", "properties": map[string]any{"initialAdminObjectIds": []string{me}}})
	if r.Status != 409 {
		t.Fatalf("reuse of a deleted HSM's name: %d %s", r.Status, r.Body)
	}
	purge, err := client.BeginPurgeDeleted(ctx, "sdk-hsm", "local", nil)
	must(t, err)
	_, err = purge.PollUntilDone(ctx, nil)
	must(t, err)
	if _, err := client.GetDeleted(ctx, "sdk-hsm", "local", nil); err == nil {
		t.Fatal("the purged HSM is still listed as deleted")
	}
}

// TestARMBadInput: ARM's error envelope, and nothing changes.
func TestARMBadInput(t *testing.T) {
	t.Parallel()
	env := servertest.Start(t)
	sub := subscriptionOf(t, env)
	tok := env.AdminToken("https://management.azure.com")
	me := jsonField(env.Graph("GET", "/servicePrincipals/"+env.Boot.ClientID, nil).Body, "id")
	base := env.Boot.AuthorityHost + "subscriptions/" + sub
	hsm := func(rg, name string, days int) map[string]any {
		return map[string]any{"location": "local", "properties": map[string]any{"initialAdminObjectIds": []string{me}, "softDeleteRetentionInDays": days}}
	}
	cases := map[string]struct {
		method, url string
		body        any
		status      int
		code        string
	}{
		"unknown api-version":  {"GET", base + "/resourceGroups/keyward?api-version=banana", nil, 400, "InvalidApiVersionParameter"},
		"no api-version":       {"GET", base + "/resourceGroups/keyward", nil, 400, "MissingApiVersionParameter"},
		"bad group name":       {"PUT", base + "/resourceGroups/bad%20name!?api-version=2021-04-01", map[string]string{"location": "local"}, 400, "InvalidResourceGroupName"},
		"bad HSM name":         {"PUT", base + "/resourceGroups/keyward/providers/Microsoft.KeyVault/managedHSMs/x?api-version=2024-11-01", hsm("keyward", "x", 90), 400, "BadParameter"},
		"retention of 3 days":  {"PUT", base + "/resourceGroups/keyward/providers/Microsoft.KeyVault/managedHSMs/short?api-version=2024-11-01", hsm("keyward", "short", 3), 400, "BadParameter"},
		"retention of 91 days": {"PUT", base + "/resourceGroups/keyward/providers/Microsoft.KeyVault/managedHSMs/long?api-version=2024-11-01", hsm("keyward", "long", 91), 400, "BadParameter"},
		"missing group":        {"PUT", base + "/resourceGroups/nowhere/providers/Microsoft.KeyVault/managedHSMs/lost?api-version=2024-11-01", hsm("nowhere", "lost", 90), 404, "ResourceGroupNotFound"},
		"assignment at a missing scope": {"PUT", base + "/resourceGroups/nowhere/providers/Microsoft.Authorization/roleAssignments/" + servertest.NewGUID() + "?api-version=2022-04-01",
			map[string]any{"properties": map[string]string{"roleDefinitionId": "/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7", "principalId": me}}, 400, "InvalidScope"},
		"unknown role": {"PUT", base + "/providers/Microsoft.Authorization/roleAssignments/" + servertest.NewGUID() + "?api-version=2022-04-01",
			map[string]any{"properties": map[string]string{"roleDefinitionId": servertest.NewGUID(), "principalId": me}}, 400, "RoleDefinitionDoesNotExist"},
		"other subscription": {"GET", env.Boot.AuthorityHost + "subscriptions/" + servertest.NewGUID() + "/resourceGroups?api-version=2021-04-01", nil, 404, "SubscriptionNotFound"},
	}
	before := env.Do("GET", base+"/providers/Microsoft.KeyVault/managedHSMs?api-version=2024-11-01", tok, nil).Body
	for name, c := range cases {
		r := env.Do(c.method, c.url, tok, c.body)
		if r.Status != c.status || r.ErrorCode() != c.code {
			t.Errorf("%s: %d %s, want %d %s: %s", name, r.Status, r.ErrorCode(), c.status, c.code, r.Body)
		}
	}
	if after := env.Do("GET", base+"/providers/Microsoft.KeyVault/managedHSMs?api-version=2024-11-01", tok, nil).Body; string(after) != string(before) {
		t.Fatal("refused requests changed the HSMs")
	}
	// Paths are case-insensitive.
	if r := env.Do("GET", env.Boot.AuthorityHost+"SUBSCRIPTIONS/"+sub+"/RESOURCEGROUPS/keyward/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/dev?api-version=2024-11-01", tok, nil); r.Status != 200 {
		t.Fatalf("upper-case path: %d %s", r.Status, r.Body)
	}
}
