//! Where the archive goes: a local (or mounted) folder, or an object store named by URL
//! (`s3://bucket/prefix`, `gs://`, `az://` or `abfss://`, `file:///abs/path`), through the
//! `object_store` crate, Arrow's own.
//!
//! A plant on several hosts shares no disk, but it has an object store; and the readers
//! analysts use (DuckDB, Polars, pyarrow, Spark) read Hive-partitioned Parquet from one as
//! well as from a folder. Credentials and the endpoint come from the usual environment
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...) and from the
//! TOML's `[archive.store_options]`, which win.

use std::fmt;
use std::path::PathBuf;

/// The URL schemes the archive writes to through `object_store`.
pub const STORE_SCHEMES: [&str; 8] = ["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss"];

/// Why an archive location was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("{text}: {scheme}:// is not an archive location auscult writes to (a folder, file://, s3://, gs://, az:// or abfss://)")]
    UnknownScheme { text: String, scheme: String },
    #[error("{text}: names no bucket or container")]
    NoBucket { text: String },
    #[error("{text}: a file:// URL needs an absolute path (file:///...)")]
    RelativeFile { text: String },
}

/// An object store URL and the options its client is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    pub url: String,
    /// `object_store` configuration keys (`aws_endpoint`, `aws_allow_http`, ...).
    pub options: Vec<(String, String)>,
}

/// A folder, or an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveLocation {
    Folder(PathBuf),
    Store(StoreLocation),
}

impl ArchiveLocation {
    /// Reads a location as the command line and the TOML give it: a URL with a scheme of
    /// [`STORE_SCHEMES`] is an object store, `file:///path` a folder written through
    /// `object_store`'s local backend, and anything without `://` a folder.
    pub fn parse(text: &str) -> Result<Self, LocationError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Ok(ArchiveLocation::Folder(PathBuf::from(text)));
        };
        let lower = scheme.to_ascii_lowercase();
        if lower == "file" {
            if !rest.starts_with('/') {
                return Err(LocationError::RelativeFile { text: text.to_owned() });
            }
            return Ok(ArchiveLocation::Store(StoreLocation { url: text.to_owned(), options: Vec::new() }));
        }
        if !STORE_SCHEMES.contains(&lower.as_str()) {
            return Err(LocationError::UnknownScheme { text: text.to_owned(), scheme: scheme.to_owned() });
        }
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(LocationError::NoBucket { text: text.to_owned() });
        }
        Ok(ArchiveLocation::Store(StoreLocation { url: text.trim_end_matches('/').to_owned(), options: Vec::new() }))
    }

    /// The same location with the client options of `[archive.store_options]`.
    pub fn with_options(self, options: impl IntoIterator<Item = (String, String)>) -> Self {
        match self {
            ArchiveLocation::Store(mut store) => {
                store.options.extend(options);
                ArchiveLocation::Store(store)
            }
            folder => folder,
        }
    }

    /// The local folder, when the archive is one (for tools that read it back from disk).
    pub fn folder(&self) -> Option<&std::path::Path> {
        match self {
            ArchiveLocation::Folder(dir) => Some(dir),
            ArchiveLocation::Store(_) => None,
        }
    }
}

impl fmt::Display for ArchiveLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchiveLocation::Folder(dir) => write!(f, "{}", dir.display()),
            ArchiveLocation::Store(store) => f.write_str(&store.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_urls_and_refusals() {
        assert_eq!(ArchiveLocation::parse("archive/").unwrap(), ArchiveLocation::Folder("archive/".into()));
        let ArchiveLocation::Store(s3) = ArchiveLocation::parse("s3://plant/archive/").unwrap() else { panic!() };
        assert_eq!(s3.url, "s3://plant/archive");
        assert!(matches!(ArchiveLocation::parse("gs://b").unwrap(), ArchiveLocation::Store(_)));
        assert!(matches!(ArchiveLocation::parse("file:///tmp/a").unwrap(), ArchiveLocation::Store(_)));
        let refused = ArchiveLocation::parse("ftp://host/x").unwrap_err().to_string();
        assert!(refused.starts_with("ftp://host/x: ftp:// is not an archive location"), "{refused}");
        assert!(matches!(ArchiveLocation::parse("s3:///x"), Err(LocationError::NoBucket { .. })));
        assert!(matches!(ArchiveLocation::parse("file://rel/x"), Err(LocationError::RelativeFile { .. })));
        let with = ArchiveLocation::parse("s3://b/p").unwrap().with_options([("aws_allow_http".into(), "true".into())]);
        assert!(matches!(with, ArchiveLocation::Store(StoreLocation { ref options, .. }) if options.len() == 1));
        assert_eq!(ArchiveLocation::parse("s3://b/p").unwrap().to_string(), "s3://b/p");
    }
}
