//! Errors of the Data Streams domain, one variant per AWS error type, mapped
//! one-to-one onto the wire error at the edge (`StreamsError::to_aws`).

use eddy_wire::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceInUse(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    ExpiredIterator(String),
    #[error("{0}")]
    ExpiredNextToken(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    ProvisionedThroughputExceeded(String),
    #[error("{0}")]
    DryRun(String),
    /// Storage or another internal failure: a 500 the client retries.
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = StreamsError> = std::result::Result<T, E>;

impl StreamsError {
    /// The AWS error type name this variant is sent as.
    pub fn code(&self) -> &'static str {
        match self {
            StreamsError::ResourceNotFound(_) => "ResourceNotFoundException",
            StreamsError::ResourceInUse(_) => "ResourceInUseException",
            StreamsError::InvalidArgument(_) => "InvalidArgumentException",
            StreamsError::LimitExceeded(_) => "LimitExceededException",
            StreamsError::Validation(_) => "ValidationException",
            StreamsError::ExpiredIterator(_) => "ExpiredIteratorException",
            StreamsError::ExpiredNextToken(_) => "ExpiredNextTokenException",
            StreamsError::AccessDenied(_) => "AccessDeniedException",
            StreamsError::ProvisionedThroughputExceeded(_) => {
                "ProvisionedThroughputExceededException"
            }
            StreamsError::DryRun(_) => "DryRunOperationException",
            StreamsError::Internal(_) => "InternalFailureException",
        }
    }

    pub fn to_aws(&self) -> AwsError {
        let status = match self {
            StreamsError::Internal(_) => 500,
            _ => 400,
        };
        AwsError::new(self.code(), self.to_string()).with_status(status)
    }
}

impl From<eddy_log::LogError> for StreamsError {
    fn from(e: eddy_log::LogError) -> Self {
        tracing::error!(error = %e, "storage error");
        StreamsError::Internal(format!("Internal service failure: {e}"))
    }
}
