package pim

import "github.com/keyward/keyward/internal/fault"

// Errors. Surfaces render them in their envelope; the codes are Azure's.
var (
	// ErrPolicyValidation names the failing rules in its message.
	ErrPolicyValidation = fault.New(fault.Invalid, "RoleAssignmentRequestPolicyValidationFailed", "The following policy rules failed: []")
	// ErrAcrsValidation: the token lacks the policy's authentication context.
	ErrAcrsValidation         = fault.New(fault.Invalid, "RoleAssignmentRequestAcrsValidationFailed", "The authentication context of the request is not satisfied.")
	ErrAssignmentExists       = fault.New(fault.Invalid, "RoleAssignmentExists", "The role assignment already exists.")
	ErrAssignmentDoesNotExist = fault.New(fault.Invalid, "RoleAssignmentDoesNotExist", "The Role assignment does not exist.")
	ErrInvalidPolicy          = fault.New(fault.Invalid, "InvalidPolicy", "The policy is invalid.")
	// ErrBadRequest is malformed input: an unknown action, a duration that
	// is not ISO 8601, a schedule in the past.
	ErrBadRequest = fault.New(fault.Invalid, "InvalidRoleAssignmentRequest", "The request is invalid.")
	// ErrTargetNotFound: the group, or role, or principal does not exist.
	ErrTargetNotFound   = fault.New(fault.NotFound, "ResourceNotFound", "The target of the request does not exist.")
	ErrRequestNotFound  = fault.New(fault.NotFound, "RoleAssignmentRequestNotFound", "The request does not exist.")
	ErrScheduleNotFound = fault.New(fault.NotFound, "RoleAssignmentScheduleNotFound", "The schedule does not exist.")
	ErrApprovalNotFound = fault.New(fault.NotFound, "ApprovalNotFound", "The approval does not exist.")
	ErrPolicyNotFound   = fault.New(fault.NotFound, "RoleManagementPolicyNotFound", "The policy does not exist.")
	// ErrNotAllowed: the caller may not make this request or decision.
	ErrNotAllowed = fault.New(fault.Forbidden, "AuthorizationFailed", "The caller is not allowed to perform this action.")
	// ErrAlreadyDecided: the approval stage was decided already.
	ErrAlreadyDecided = fault.New(fault.Conflict, "ApprovalStageAlreadyReviewed", "The approval stage was already reviewed.")
	// ErrNotCancelable: only a request waiting for approval can be canceled.
	ErrNotCancelable = fault.New(fault.Invalid, "RoleAssignmentRequestNotCancelable", "Only a request that waits for approval can be canceled.")
)
