//! Archive files on an object store. A file appears whole or not at all: a small one is one
//! PUT, which a store makes visible only when complete; a large one is a multipart upload
//! whose parts stay invisible until the upload is completed, last (and is aborted on error).
//! The writer is synchronous like the dataflow around it: one single-threaded tokio runtime
//! per writer drives the client.

use super::location::StoreLocation;
use super::ArchiveError;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// Files up to this size are one PUT; larger ones are uploaded in parts of this size.
const PART_BYTES: usize = 16 * 1024 * 1024;

/// A client's error on one line: S3 errors carry the server's XML reply, over many lines.
fn one_line(text: impl std::fmt::Display) -> String {
    let line = text.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(400) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// The client for `url`: configured from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then
/// from `options`, which win; and the key prefix the URL names.
fn build(url: &url::Url, options: &[(String, String)]) -> Result<(Box<dyn ObjectStore>, ObjectPath), String> {
    use object_store::aws::AmazonS3Builder;
    use object_store::azure::MicrosoftAzureBuilder;
    use object_store::gcp::GoogleCloudStorageBuilder;
    use object_store::local::LocalFileSystem;
    use object_store::ObjectStoreScheme;
    fn configured<B, K: std::str::FromStr>(
        mut builder: B,
        options: &[(String, String)],
        with: impl Fn(B, K, &str) -> B,
    ) -> Result<B, String> {
        for (key, value) in options {
            let parsed = key.parse().map_err(|_| format!("{key} is not a client option of this store"))?;
            builder = with(builder, parsed, value);
        }
        Ok(builder)
    }
    let (scheme, path) = ObjectStoreScheme::parse(url).map_err(|e| e.to_string())?;
    let prefix = ObjectPath::parse(path).map_err(|e| e.to_string())?;
    let store: Box<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => Box::new(LocalFileSystem::new()),
        ObjectStoreScheme::AmazonS3 => {
            let builder = AmazonS3Builder::from_env().with_url(url.as_str());
            Box::new(configured(builder, options, |b, k, v| b.with_config(k, v))?.build().map_err(|e| e.to_string())?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let builder = GoogleCloudStorageBuilder::from_env().with_url(url.as_str());
            Box::new(configured(builder, options, |b, k, v| b.with_config(k, v))?.build().map_err(|e| e.to_string())?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let builder = MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            Box::new(configured(builder, options, |b, k, v| b.with_config(k, v))?.build().map_err(|e| e.to_string())?)
        }
        other => return Err(format!("{other:?} is not a store the archive writes to")),
    };
    Ok((store, prefix))
}

/// A store, the key prefix under it, and the runtime its client runs on.
pub struct StoreSink {
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
}

impl StoreSink {
    pub fn open(location: &StoreLocation) -> Result<Self, ArchiveError> {
        let failed = |reason: String| ArchiveError::Store { url: location.url.clone(), reason: one_line(reason) };
        let url = url::Url::parse(&location.url).map_err(|e| failed(e.to_string()))?;
        let (store, prefix) = build(&url, &location.options).map_err(failed)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| failed(format!("cannot start the client's runtime: {e}")))?;
        Ok(Self { url: location.url.clone(), store: Arc::from(store), prefix, runtime })
    }

    /// The URL of the object at `relative` (`date=.../machine_type=.../part-....parquet`).
    pub fn url_of(&self, relative: &str) -> String {
        format!("{}/{relative}", self.url.trim_end_matches('/'))
    }

    fn key(&self, relative: &str) -> ObjectPath {
        let relative = ObjectPath::from(relative);
        ObjectPath::from_iter(self.prefix.parts().chain(relative.parts()))
    }

    /// The relative keys of the committed Parquet files under the prefix, in key order (a
    /// name starting with a dot is not a committed file).
    pub fn parquet_objects(&self) -> Result<Vec<String>, ArchiveError> {
        use futures::TryStreamExt;
        let failed = |reason: String| ArchiveError::Store { url: self.url.clone(), reason: one_line(reason) };
        let objects: Vec<object_store::ObjectMeta> = self
            .runtime
            .block_on(self.store.list(Some(&self.prefix)).try_collect())
            .map_err(|e: object_store::Error| failed(e.to_string()))?;
        let skip = self.prefix.parts().count();
        let mut relative: Vec<String> = objects
            .iter()
            .map(|object| object.location.parts().skip(skip).map(|part| part.as_ref().to_owned()).collect::<Vec<_>>())
            .filter(|parts| parts.last().is_some_and(|name| name.ends_with(".parquet") && !name.starts_with('.')))
            .map(|parts| parts.join("/"))
            .collect();
        relative.sort();
        Ok(relative)
    }

    /// The whole object at `relative`.
    pub fn get(&self, relative: &str) -> Result<bytes::Bytes, ArchiveError> {
        let failed = |reason: String| ArchiveError::Store { url: self.url_of(relative), reason: one_line(reason) };
        let key = self.key(relative);
        self.runtime.block_on(async { self.store.get(&key).await?.bytes().await }).map_err(|e| failed(e.to_string()))
    }

    /// Uploads the `bytes` bytes of `file` (from its start) to `relative` under the prefix.
    pub fn put_file(&self, relative: &str, mut file: File, bytes: u64) -> Result<(), ArchiveError> {
        let failed = |reason: String| ArchiveError::Store { url: self.url_of(relative), reason: one_line(reason) };
        let key = self.key(relative);
        file.seek(SeekFrom::Start(0)).map_err(|e| failed(e.to_string()))?;
        if bytes as usize <= PART_BYTES {
            let mut contents = Vec::with_capacity(bytes as usize);
            file.read_to_end(&mut contents).map_err(|e| failed(e.to_string()))?;
            self.runtime
                .block_on(self.store.put(&key, PutPayload::from(contents)))
                .map_err(|e| failed(e.to_string()))?;
            return Ok(());
        }
        self.runtime.block_on(async {
            let mut upload = self.store.put_multipart(&key).await.map_err(|e| failed(e.to_string()))?;
            let mut sent = 0u64;
            let result: Result<(), ArchiveError> = async {
                while sent < bytes {
                    let mut part = vec![0u8; PART_BYTES.min((bytes - sent) as usize)];
                    file.read_exact(&mut part).map_err(|e| failed(e.to_string()))?;
                    sent += part.len() as u64;
                    upload.put_part(PutPayload::from(part)).await.map_err(|e| failed(e.to_string()))?;
                }
                upload.complete().await.map(|_| ()).map_err(|e| failed(e.to_string()))
            }
            .await;
            if result.is_err() {
                let _ = upload.abort().await;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_reply_becomes_one_bounded_line() {
        let reply = "Client error 404:\n<Error>\n  <Code>NoSuchBucket</Code>\n</Error>\n";
        assert_eq!(one_line(reply), "Client error 404: <Error> <Code>NoSuchBucket</Code> </Error>");
        assert!(one_line("x ".repeat(1000)).len() < 410);
    }

    #[test]
    fn an_unknown_client_option_is_named() {
        let location = StoreLocation {
            url: "s3://bucket/prefix".to_owned(),
            options: vec![("aws_no_such_option".to_owned(), "1".to_owned())],
        };
        let error = StoreSink::open(&location).err().expect("refused").to_string();
        assert!(error.contains("s3://bucket/prefix") && error.contains("aws_no_such_option"), "{error}");
    }
}
