//! The server's one error type. Every error a client can see has a kind, and
//! [`Error::sqlstate`] maps kinds to PostgreSQL SQLSTATE codes in this one place.

use std::fmt;

pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong, as far as the client is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 42601
    Syntax,
    /// 42P01
    UndefinedTable,
    /// 42703
    UndefinedColumn,
    /// 3D000
    UndefinedDatabase,
    /// 42P07
    DuplicateTable,
    /// 42P04
    DuplicateDatabase,
    /// 42701
    DuplicateColumn,
    /// 23505
    UniqueViolation,
    /// 23502
    NotNullViolation,
    /// 22P02
    InvalidTextRepresentation,
    /// 22003
    NumericOutOfRange,
    /// 22012
    DivisionByZero,
    /// 42804
    DatatypeMismatch,
    /// 42846
    CannotCoerce,
    /// 42883
    UndefinedFunction,
    /// 0A000
    FeatureNotSupported,
    /// 25P02
    InFailedTransaction,
    /// 40001
    SerializationFailure,
    /// 08P01
    Protocol,
    /// 26000
    InvalidStatementName,
    /// 34000
    InvalidCursorName,
    /// 42803
    Grouping,
    /// 42P10
    InvalidColumnReference,
    /// 21000
    Cardinality,
    /// 22023
    InvalidParameterValue,
    /// 42704
    UndefinedObject,
    /// 42P18
    IndeterminateDatatype,
    /// 57014
    QueryCanceled,
    /// 22001
    StringTooLong,
    /// 21000-like: ON CONFLICT touching a row twice
    CardinalityViolation,
    /// 42809
    WrongObjectType,
    /// 2BP01
    DependentObjects,
    /// 25001
    ActiveTransaction,
    /// 57P01
    AdminShutdown,
    /// 22007
    InvalidDatetimeFormat,
    /// 22008
    DatetimeFieldOverflow,
    /// 22015: an interval field out of range on input.
    IntervalFieldOverflow,
    /// 42P19: a recursive CTE of the wrong shape.
    InvalidRecursion,
    /// 42P16
    InvalidTableDefinition,
    /// 42702
    AmbiguousColumn,
    /// 54000
    ProgramLimitExceeded,
    /// 54001
    StatementTooComplex,
    /// 42712
    DuplicateAlias,
    /// 2201W
    InvalidRowCountInLimit,
    /// 2201X
    InvalidRowCountInOffset,
    /// The request reached a range that no longer holds the key (it was split): the
    /// gateway refreshes its range descriptors and resends. 40001 if it ever reaches a
    /// client.
    RangeKeyMismatch,
    /// A replicated write whose outcome is unknown: its leader lost leadership before
    /// the write applied (it may still commit). SQLSTATE 40003.
    AmbiguousResult,
    /// 42P20
    Windowing,
    /// 25P01
    NoActiveSqlTransaction,
    /// 3B001
    InvalidSavepoint,
    /// 22P04
    BadCopyFileFormat,
    /// 23514
    CheckViolation,
    /// 42710
    DuplicateObject,
    /// 55P03: `FOR UPDATE NOWAIT` found the row locked.
    LockNotAvailable,
    /// 23503
    ForeignKeyViolation,
    /// 2200H: a sequence reached its MAXVALUE / MINVALUE without CYCLE.
    SequenceGeneratorLimitExceeded,
    /// 55000
    ObjectNotInPrerequisiteState,
    /// 42830
    InvalidForeignKey,
    /// 58000: the node cannot serve (its clock is too far off the cluster's).
    SystemError,
    /// XX000
    Internal,
    /// 42P05: a prepared statement of that name exists (appended: kinds keep their order).
    DuplicatePreparedStatement,
    /// 22025: a bad LIKE escape string (appended).
    InvalidEscapeSequence,
    /// 22014: ntile() of zero or less (appended).
    InvalidArgumentForNtile,
    /// 3F000: a schema that does not exist (appended).
    InvalidSchemaName,
    /// 42P06: CREATE SCHEMA of a schema that exists (appended).
    DuplicateSchema,
    /// 42P09: a table name two FROM items answer to (appended).
    AmbiguousAlias,
    /// 42602: a name that does not parse, such as nextval('a b') (appended).
    InvalidName,
    /// 2201B: a regular expression that does not compile (appended).
    InvalidRegularExpression,
    /// 2201F: the square root of a negative number and the like (appended).
    InvalidArgumentForPowerFunction,
    /// A row lock wait on another node used up its slice
    /// ([`crate::kv::LockWait::Slice`]); the gateway asks again. 40001 should it ever
    /// reach a client (appended).
    LockWaitSlice,
    /// 2202E: arrays of mismatched dimensions (appended).
    ArraySubscriptError,
    /// 22000: a data exception with no more specific code (appended).
    DataException,
    /// 42723: CREATE FUNCTION of a function that exists with the same argument types
    /// (appended).
    DuplicateFunction,
    /// 42725: a function call or DROP FUNCTION that matches several functions (appended).
    AmbiguousFunction,
    /// 42P13: a function definition PostgreSQL refuses, such as a body whose result does
    /// not fit the declared return type (appended).
    InvalidFunctionDefinition,
    /// 25006: a write in a READ ONLY transaction (appended).
    ReadOnlySqlTransaction,
    /// 42939: a name reserved for built-in objects (appended).
    ReservedName,
    /// 42P03: DECLARE of a cursor whose name is taken (appended).
    DuplicateCursor,
    /// 42P17: an object definition PostgreSQL refuses, such as an index expression that
    /// is not immutable (appended).
    InvalidObjectDefinition,
}

/// An error with its kind, a message for people, and optionally the 1-based character
/// position in the statement it points at.
#[derive(Clone, Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub position: Option<usize>,
    pub hint: Option<String>,
    pub detail: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            position: None,
            hint: None,
            detail: None,
        }
    }
    pub fn with_position(mut self, pos: usize) -> Self {
        self.position = Some(pos);
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn syntax(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Syntax, m)
    }
    pub fn unsupported(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::FeatureNotSupported, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, m)
    }
    pub fn protocol(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, m)
    }
    pub fn invalid_text(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidTextRepresentation, m)
    }
    pub fn out_of_range(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::NumericOutOfRange, m)
    }
    pub fn cannot_coerce(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::CannotCoerce, m)
    }
    pub fn mismatch(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::DatatypeMismatch, m)
    }
    pub fn retry(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::SerializationFailure, m)
    }

    /// The client may retry the transaction (SQLSTATE 40001).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::SerializationFailure | ErrorKind::RangeKeyMismatch
        )
    }

    /// The SQLSTATE reported to clients.
    pub fn sqlstate(&self) -> &'static str {
        use ErrorKind::*;
        match self.kind {
            Syntax => "42601",
            UndefinedTable => "42P01",
            UndefinedColumn => "42703",
            UndefinedDatabase => "3D000",
            DuplicateTable => "42P07",
            DuplicateDatabase => "42P04",
            DuplicateColumn => "42701",
            UniqueViolation => "23505",
            NotNullViolation => "23502",
            InvalidTextRepresentation => "22P02",
            NumericOutOfRange => "22003",
            DivisionByZero => "22012",
            DatatypeMismatch => "42804",
            CannotCoerce => "42846",
            UndefinedFunction => "42883",
            FeatureNotSupported => "0A000",
            InFailedTransaction => "25P02",
            SerializationFailure | RangeKeyMismatch => "40001",
            AmbiguousResult => "40003",
            Protocol => "08P01",
            InvalidStatementName => "26000",
            InvalidCursorName => "34000",
            Grouping => "42803",
            InvalidColumnReference => "42P10",
            Cardinality | CardinalityViolation => "21000",
            InvalidParameterValue => "22023",
            UndefinedObject => "42704",
            IndeterminateDatatype => "42P18",
            QueryCanceled => "57014",
            StringTooLong => "22001",
            WrongObjectType => "42809",
            DependentObjects => "2BP01",
            ActiveTransaction => "25001",
            AdminShutdown => "57P01",
            InvalidDatetimeFormat => "22007",
            DatetimeFieldOverflow => "22008",
            IntervalFieldOverflow => "22015",
            InvalidRecursion => "42P19",
            InvalidTableDefinition => "42P16",
            AmbiguousColumn => "42702",
            ProgramLimitExceeded => "54000",
            StatementTooComplex => "54001",
            DuplicateAlias => "42712",
            InvalidRowCountInLimit => "2201W",
            InvalidRowCountInOffset => "2201X",
            NoActiveSqlTransaction => "25P01",
            Windowing => "42P20",
            InvalidSavepoint => "3B001",
            BadCopyFileFormat => "22P04",
            CheckViolation => "23514",
            DuplicateObject => "42710",
            LockNotAvailable => "55P03",
            SystemError => "58000",
            ForeignKeyViolation => "23503",
            SequenceGeneratorLimitExceeded => "2200H",
            ObjectNotInPrerequisiteState => "55000",
            InvalidForeignKey => "42830",
            Internal => "XX000",
            DuplicatePreparedStatement => "42P05",
            InvalidEscapeSequence => "22025",
            InvalidArgumentForNtile => "22014",
            InvalidSchemaName => "3F000",
            DuplicateSchema => "42P06",
            AmbiguousAlias => "42P09",
            InvalidName => "42602",
            InvalidRegularExpression => "2201B",
            InvalidArgumentForPowerFunction => "2201F",
            LockWaitSlice => "40001",
            ArraySubscriptError => "2202E",
            DataException => "22000",
            DuplicateFunction => "42723",
            AmbiguousFunction => "42725",
            InvalidFunctionDefinition => "42P13",
            ReadOnlySqlTransaction => "25006",
            ReservedName => "42939",
            DuplicateCursor => "42P03",
            InvalidObjectDefinition => "42P17",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<chitin_storage::Error> for Error {
    fn from(e: chitin_storage::Error) -> Self {
        Error::internal(format!("storage: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(format!("i/o: {e}"))
    }
}
