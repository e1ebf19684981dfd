package graph

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/identity"
	"github.com/keyward/keyward/internal/store"
)

// Object is a directory object as Graph v1.0 answers it without $select:
// every default property of its type, those Keyward does not hold null
// (collections []), so that a caller's --query or $.mail finds the key
// whether or not it is set. The field lists are Graph's own, as recorded in
// azure-cli's tests (role/tests/latest/recordings: test_user_scenario,
// test_group_scenario, test_service_principal_scenario), which az prints
// unchanged.
type Object map[string]any

// objectOf renders p. typed adds @odata.type, which Graph sends in
// directoryObject collections (members, getByIds) and not in typed ones
// (/users, /groups, /servicePrincipals).
func objectOf(p *identity.Principal, tenant string, typed bool) Object {
	created := p.Created.UTC().Format(time.RFC3339)
	var o Object
	switch p.Kind {
	case store.KindUser:
		o = Object{"id": p.ID, "businessPhones": []string{}, "displayName": p.DisplayName, "givenName": nil, "jobTitle": nil,
			"mail": nil, "mobilePhone": nil, "officeLocation": nil, "preferredLanguage": nil, "surname": nil,
			"userPrincipalName": p.UPN}
	case store.KindGroup:
		o = Object{"id": p.ID, "deletedDateTime": nil, "classification": nil, "createdDateTime": created, "creationOptions": []string{},
			"description": nil, "displayName": p.DisplayName, "expirationDateTime": nil, "groupTypes": []string{},
			"isAssignableToRole": nil, "mail": nil, "mailEnabled": false, "mailNickname": p.MailNickname, "membershipRule": nil,
			"membershipRuleProcessingState": nil, "onPremisesDomainName": nil, "onPremisesLastSyncDateTime": nil,
			"onPremisesNetBiosName": nil, "onPremisesSamAccountName": nil, "onPremisesSecurityIdentifier": nil,
			"onPremisesSyncEnabled": nil, "preferredDataLocation": nil, "preferredLanguage": nil, "proxyAddresses": []string{},
			"renewedDateTime": created, "resourceBehaviorOptions": []string{}, "resourceProvisioningOptions": []string{},
			"securityEnabled": true, "securityIdentifier": securityIdentifier(p.ID), "theme": nil, "visibility": nil,
			"onPremisesProvisioningErrors": []any{}, "serviceProvisioningErrors": []any{}}
	default:
		spType := "Application"
		if p.Kind == store.KindManagedIdentity {
			spType = "ManagedIdentity"
		}
		o = Object{"id": p.ID, "deletedDateTime": nil, "accountEnabled": true, "alternativeNames": []string{},
			"appDisplayName": p.DisplayName, "appDescription": nil, "appId": p.AppID, "applicationTemplateId": nil,
			"appOwnerOrganizationId": tenant, "appRoleAssignmentRequired": false, "createdDateTime": created, "description": nil,
			"disabledByMicrosoftStatus": nil, "displayName": p.DisplayName, "homepage": nil, "loginUrl": nil, "logoutUrl": nil,
			"notes": nil, "notificationEmailAddresses": []string{}, "preferredSingleSignOnMode": nil,
			"preferredTokenSigningKeyThumbprint": nil, "replyUrls": []string{}, "servicePrincipalNames": []string{p.AppID},
			"servicePrincipalType": spType, "signInAudience": "AzureADMyOrg", "tags": []string{}, "tokenEncryptionKeyId": nil,
			"samlSingleSignOnSettings": nil,
			"verifiedPublisher":        map[string]any{"displayName": nil, "verifiedPublisherId": nil, "addedDateTime": nil},
			"addIns":                   []any{}, "appRoles": []any{},
			"info": map[string]any{"logoUrl": nil, "marketingUrl": nil, "privacyStatementUrl": nil, "supportUrl": nil,
				"termsOfServiceUrl": nil},
			"keyCredentials": []any{}, "oauth2PermissionScopes": []any{}, "passwordCredentials": []any{},
			"resourceSpecificApplicationPermissions": []any{}}
	}
	if typed {
		o["@odata.type"] = odataType(p.Kind)
	}
	return o
}

func odataType(kind string) string {
	switch kind {
	case store.KindUser:
		return "#microsoft.graph.user"
	case store.KindGroup:
		return "#microsoft.graph.group"
	}
	return "#microsoft.graph.servicePrincipal"
}

// entitySet is the Graph collection an object of kind belongs to.
func entitySet(kind string) string {
	switch kind {
	case store.KindUser:
		return "users"
	case store.KindGroup:
		return "groups"
	}
	return "servicePrincipals"
}

// securityIdentifier is a cloud group's SID as Entra derives it from the
// object id: S-1-12-1 and the id's sixteen bytes as four little-endian
// 32-bit numbers.
func securityIdentifier(id string) string {
	u, err := uuid.Parse(id)
	if err != nil {
		return ""
	}
	b := u[:]
	// The GUID's first three fields are stored little-endian, as Windows
	// lays a GUID out in memory.
	le := [16]byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]}
	copy(le[8:], b[8:])
	return fmt.Sprintf("S-1-12-1-%d-%d-%d-%d", binary.LittleEndian.Uint32(le[0:]), binary.LittleEndian.Uint32(le[4:]),
		binary.LittleEndian.Uint32(le[8:]), binary.LittleEndian.Uint32(le[12:]))
}

// metadataURL is Graph's @odata.context for what (such as "users/$entity"
// or "directoryObjects") at the host r was sent to.
func metadataURL(r *http.Request, what string) string {
	return "https://" + r.Host + "/v1.0/$metadata#" + what
}

// entity is one object as Graph answers a GET or POST of it, with its
// @odata.context.
func (a *API) entity(r *http.Request, p *identity.Principal) Object {
	o := objectOf(p, a.dir.TenantID(), false)
	o["@odata.context"] = metadataURL(r, entitySet(p.Kind)+"/$entity")
	return o
}

// collection is a Graph list answer: its @odata.context and value.
func collection(r *http.Request, what string, value []Object) map[string]any {
	if value == nil {
		value = []Object{}
	}
	return map[string]any{"@odata.context": metadataURL(r, what), "value": value}
}

// withCredentials adds a service principal's client secrets (without them)
// and certificates, as Graph lists them on the object.
func (a *API) withCredentials(ctx context.Context, o Object, p *identity.Principal) error {
	creds, err := a.dir.Secrets(ctx, p.ID)
	if err != nil {
		return err
	}
	pw := []PasswordCredentialInfo{}
	for _, c := range creds {
		pw = append(pw, PasswordCredentialInfo{KeyID: c.ID, DisplayName: c.DisplayName, Hint: c.Hint,
			StartDateTime: c.Created.Format(time.RFC3339), EndDateTime: c.Expires.Format(time.RFC3339)})
	}
	certs, err := a.dir.Certificates(ctx, p.ID)
	if err != nil {
		return err
	}
	keys := []KeyCredential{}
	for _, c := range certs {
		keys = append(keys, keyCredentialOf(c))
	}
	o["passwordCredentials"], o["keyCredentials"] = pw, keys
	return nil
}
