//! The one error type of the request path: an HTTP status and the issues of the
//! OperationOutcome that explains it. Storage and validation errors convert into it.

use axum::http::StatusCode;
use serde_json::{Value, json};

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// fatal | error | warning | information
    pub severity: &'static str,
    /// The FHIR IssueType code (invalid, structure, required, not-found, ...).
    pub code: &'static str,
    pub diagnostics: String,
    /// FHIRPath expressions naming the offending element(s).
    pub expression: Vec<String>,
}

/// A failed request: the status to answer and the issues to report.
#[derive(Debug, Clone)]
pub struct FhirError {
    pub status: StatusCode,
    pub issues: Vec<Issue>,
}

impl FhirError {
    pub fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        FhirError {
            status,
            issues: vec![Issue {
                severity: "error",
                code,
                diagnostics: diagnostics.into(),
                expression: Vec::new(),
            }],
        }
    }

    /// Attaches an element expression to the first issue.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        if let Some(issue) = self.issues.first_mut() {
            issue.expression.push(expression.into());
        }
        self
    }

    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
    }

    pub fn structure(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "structure", diagnostics)
    }

    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", diagnostics)
    }

    pub fn gone(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "deleted", diagnostics)
    }

    pub fn precondition_failed(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, "conflict", diagnostics)
    }

    pub fn multiple_matches(diagnostics: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "multiple-matches",
            diagnostics,
        )
    }

    pub fn conflict(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", diagnostics)
    }

    pub fn method_not_allowed(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "not-supported", diagnostics)
    }

    pub fn not_supported(diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "not-supported", diagnostics)
    }

    /// A failure of ours, not the client's. The detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "Internal server error; see the server log",
        )
    }

    /// The OperationOutcome resource for this error.
    pub fn outcome(&self) -> Value {
        outcome(&self.issues)
    }
}

/// Builds an OperationOutcome from issues.
pub fn outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|issue| {
            let mut value = json!({
                "severity": issue.severity,
                "code": issue.code,
                "diagnostics": issue.diagnostics,
            });
            if !issue.expression.is_empty() {
                value["expression"] = json!(issue.expression);
            }
            value
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// An OperationOutcome with one informational issue (for `Prefer: return=OperationOutcome`
/// and successful deletes).
pub fn information(diagnostics: impl Into<String>) -> Value {
    outcome(&[Issue {
        severity: "information",
        code: "informational",
        diagnostics: diagnostics.into(),
        expression: Vec::new(),
    }])
}

impl From<fhir_model::validate::Issue> for Issue {
    fn from(issue: fhir_model::validate::Issue) -> Self {
        Issue {
            severity: "error",
            code: issue.code,
            diagnostics: issue.message,
            expression: vec![issue.expression],
        }
    }
}

/// Validation issues: 400 when the JSON is not an R4 resource at all (structure), 422 when
/// it is one but breaks a rule of the definitions (content).
impl From<Vec<fhir_model::validate::Issue>> for FhirError {
    fn from(issues: Vec<fhir_model::validate::Issue>) -> Self {
        let structural = issues
            .iter()
            .any(|i| i.category == fhir_model::validate::Category::Structure);
        FhirError {
            status: if structural {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            },
            issues: issues.into_iter().map(Issue::from).collect(),
        }
    }
}
