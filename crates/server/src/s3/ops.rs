//! The S3 operations, each over the caller's tenant (the access check has passed before any of them runs).

use super::body::{decoded_length, ChanBody};
use super::checksums::{self, Wanted};
use super::conditions;
use super::errors::{no_bucket, no_key, s3err, slow_down};
use super::listing::{hex_token, list_keys, max_keys, object_entry, owner, unhex_token, version_page, Names};
use super::parts::{part_plan, PartPlan};
use super::refuse;
use super::state::{delete_one, find_version, upload_of};
use super::trace::note;
use super::write::{standard_headers, version_of, Recorder};
use super::{blocking, now_ms, random_id, timestamp, Gateway, MAX_PARTS, MIN_PART};
use crate::auth::Role;
use bytes::Bytes;
use mvault_core::buckets::{self, Part, Record, Upload, Version};
use mvault_core::ids::ChunkId;
use mvault_core::objects;
use mvault_core::Error;
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use std::collections::BTreeMap;

#[async_trait::async_trait]
impl S3 for Gateway {
    /// Browser form uploads: s3s would buffer the whole file before any check; not offered.
    async fn post_object(&self, _req: S3Request<PostObjectInput>) -> S3Result<S3Response<PostObjectOutput>> {
        Err(s3_error!(NotImplemented, "browser form uploads (POST Object) are not supported; use PUT"))
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        let max = match i.max_buckets {
            Some(m) if !(1..=10_000).contains(&m) => {
                return Err(s3_error!(InvalidArgument, "max-buckets {m}: between 1 and 10,000"));
            }
            Some(m) => m as usize,
            None => usize::MAX,
        };
        let after = i.continuation_token.as_deref().map(unhex_token).transpose()?;
        let (t, prefix) = (c.tenant.clone(), i.prefix.clone().unwrap_or_default());
        let (list, next) = blocking(move || {
            t.buckets(|st, _| {
                let mut names =
                    st.buckets.iter().filter(|(n, _)| n.starts_with(&prefix) && after.as_ref().is_none_or(|a| *n > a));
                let page: Vec<Bucket> = names
                    .by_ref()
                    .take(max)
                    .map(|(n, b)| Bucket {
                        name: Some(n.clone()),
                        creation_date: Some(timestamp(b.created_ms)),
                        ..Default::default()
                    })
                    .collect();
                let more = names.next().is_some();
                let next = more.then(|| page.last().and_then(|b| b.name.as_deref()).map(hex_token)).flatten();
                Ok((page, next))
            })
        })
        .await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(list),
            continuation_token: next,
            owner: Some(owner(&c.tenant_name())),
            prefix: req.input.prefix,
        }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let c = self.caller(&req).await?;
        refuse::create_bucket(&req.input)?;
        let name = req.input.bucket.clone();
        if !buckets::valid_bucket_name(&name) {
            return Err(s3_error!(InvalidBucketName, "{name}: 3-63 of a-z, 0-9, '.' and '-'"));
        }
        let t = c.tenant.clone();
        let n2 = name.clone();
        blocking(move || {
            t.buckets(|st, repo| {
                if st.buckets.contains_key(&n2) {
                    return Err(s3_error!(BucketAlreadyOwnedByYou, "bucket {n2} exists"));
                }
                buckets::append(repo, st, Record::CreateBucket { bucket: n2.clone(), time_ms: now_ms() }).map_err(s3err)
            })
        })
        .await?;
        Ok(S3Response::new(CreateBucketOutput { location: Some(format!("/{name}")) }))
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let c = self.caller(&req).await?;
        let (t, name) = (c.tenant.clone(), req.input.bucket.clone());
        blocking(move || {
            t.buckets(|st, repo| {
                let b = st.buckets.get(&name).ok_or_else(|| no_bucket(&name))?;
                // As on S3: objects and versions keep a bucket; uploads in progress go with it (their parts
                // are then garbage for prune).
                if !b.is_empty() {
                    return Err(s3_error!(
                        BucketNotEmpty,
                        "bucket {name} holds objects, or versions that retention still keeps"
                    ));
                }
                buckets::append(repo, st, Record::DeleteBucket { bucket: name.clone() }).map_err(s3err)
            })
        })
        .await?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        let c = self.caller(&req).await?;
        self.require_bucket(&c, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let c = self.caller(&req).await?;
        self.require_bucket(&c, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    /// Versioning is always on: enabling it is what already holds; suspending it cannot be honoured.
    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let c = self.caller(&req).await?;
        self.require_bucket(&c, &req.input.bucket).await?;
        let conf = &req.input.versioning_configuration;
        if conf.mfa_delete.as_ref().is_some_and(|m| m.as_str() == MFADelete::ENABLED) {
            return Err(s3_error!(NotImplemented, "MFA delete is not supported by this gateway"));
        }
        match conf.status.as_ref().map(|s| s.as_str()) {
            Some(BucketVersioningStatus::ENABLED) => Ok(S3Response::new(PutBucketVersioningOutput {})),
            other => Err(s3_error!(
                NotImplemented,
                "versioning {}: buckets here always keep versions (until retention expires them)",
                other.unwrap_or("(no status)")
            )),
        }
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let c = self.caller(&req).await?;
        self.require_bucket(&c, &req.input.bucket).await?;
        // Overwritten and deleted versions are always kept until retention expires them.
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: Some(BucketVersioningStatus::from_static(BucketVersioningStatus::ENABLED)),
            ..Default::default()
        }))
    }

    async fn put_object(&self, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let c = self.caller(&req).await?;
        refuse::put(&req.input)?;
        let wanted = Wanted::from_headers(&req.headers)?;
        let i = &mut req.input;
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        let (if_match, if_none_match) = (i.if_match.clone(), i.if_none_match.clone());
        let guard = move |current: Option<&Version>, key: &str, appender: bool| -> S3Result<()> {
            if appender && current.is_some() {
                return Err(s3_error!(AccessDenied, "an appender key may not overwrite {key}, which exists"));
            }
            conditions::write(if_match.as_ref(), if_none_match.as_ref(), current, key)
        };
        let appender = c.token.role == Role::Appender;
        // The conditions are checked before the body is read (a quick refusal) and again when the version is
        // recorded (the answer that counts).
        let (t, b2, k2, g2) = (c.tenant.clone(), bucket.clone(), key.clone(), guard.clone());
        blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&b2).ok_or_else(|| no_bucket(&b2))?;
                g2(b.current(&k2), &k2, appender)
            })
        })
        .await?;
        let len = i.content_length.or_else(|| decoded_length(&req.headers));
        let i = &mut req.input;
        let (ct, meta) = (i.content_type.clone(), i.metadata.take());
        let headers = standard_headers(
            i.cache_control.as_deref(),
            i.content_disposition.as_deref(),
            i.content_encoding.as_deref(),
            i.content_language.as_deref(),
            i.expires.as_ref(),
        );
        let k2 = key.clone();
        let mut headers = headers;
        if let Some(sse) = &i.server_side_encryption {
            // Only AES256 gets here (refuse::put): SSE-S3 is what every object has; say so on every read.
            headers.insert("x-amz-server-side-encryption".into(), sse.as_str().to_string());
        }
        let record: Recorder = Box::new(move |t, w, sums| {
            let mut v = version_of(w, hex::encode(w.md5), ct, meta);
            v.headers = headers;
            v.checksums = sums;
            let k3 = k2.clone();
            t.put_version(bucket, k2, v.clone(), &|current| guard(current, &k3, appender))?;
            Ok(Some(v))
        });
        let body = i.body.take();
        let sums = (wanted, req.trailing_headers.take());
        let (_, v) =
            self.store_body(&c, &key, len, body, i.content_md5.as_deref(), sums, PartPlan::Object, record).await?;
        let out = v.expect("a put records a version");
        let sums = checksums::as_output(&out.checksums);
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(out.etag)),
            version_id: Some(out.id),
            size: Some(out.size as i64),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            server_side_encryption: req.input.server_side_encryption.clone(),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        refuse::read_with_customer_key(i.sse_customer_algorithm.as_deref(), i.sse_customer_key.as_deref())?;
        refuse::read_with_write_headers(&req.headers)?;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let v = blocking(move || t.buckets(|st, _| find_version(st, &bucket, &key, vid.as_deref()))).await?;
        read_conditions!(i).check(&v)?;
        let (range, parts_count) = read_range(&v, i.range.as_ref(), i.part_number)?;
        let (start, end) = range.as_ref().map(|r| (r.start, r.end)).unwrap_or((0, v.size));
        let len = end - start;
        let app = self.0.clone();
        let token = c.token.clone();
        if let Err(l) = blocking(move || app.throttle(&token, 0.0, len).map_err(s3err)).await? {
            return Err(slow_down(l));
        }
        // The chunk list and lengths, then the bytes, read a chunk at a time under a short read lock.
        let t = c.tenant.clone();
        let tree = v.tree_id().map_err(s3err)?.ok_or_else(|| no_key(&i.key))?;
        let chunks = blocking(move || {
            let repo = t.repo.read().expect("tenant repo");
            let ids = objects::chunks(&*repo, &tree).map_err(s3err)?;
            let found = repo.lookup_many(&ids).map_err(s3err)?;
            ids.into_iter()
                .zip(found)
                .map(|(id, found)| match found {
                    Some(l) => Ok((id, l.raw_length as u64)),
                    None => Err(s3err(Error::corrupt(format!("chunk {id}"), "an object names it but no index does"))),
                })
                .collect::<S3Result<Vec<_>>>()
        })
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let t = c.tenant.clone();
        tokio::task::spawn_blocking(move || {
            let mut sink = |b: Vec<u8>| {
                tx.blocking_send(Ok(Bytes::from(b))).map_err(|_| Error::Usage("the client went away".into()))
            };
            let mut read = |id: &ChunkId| t.repo.read().expect("tenant repo").read_blob(id);
            if let Err(e) = objects::read_range(&mut read, &chunks, start, end, &mut sink) {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        });
        note(c.trace.as_ref(), |t| t.bytes_out = len);
        let sums = checksum_output(i.checksum_mode.as_ref(), &v, range.is_some() && parts_count.is_none());
        let h = served!(&v, i);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::new(ChanBody { rx, left: len as usize })),
            content_length: Some(len as i64),
            content_range: range.map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), v.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(v.etag.clone())),
            last_modified: Some(timestamp(v.time_ms)),
            content_type: h.content_type,
            cache_control: h.cache_control,
            content_disposition: h.content_disposition,
            content_encoding: h.content_encoding,
            content_language: h.content_language,
            expires: h.expires,
            server_side_encryption: h.sse,
            parts_count,
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            checksum_type: sums.checksum_type,
            metadata: (!v.metadata.is_empty()).then(|| v.metadata.clone().into_iter().collect()),
            version_id: Some(v.id.clone()),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        refuse::read_with_customer_key(i.sse_customer_algorithm.as_deref(), i.sse_customer_key.as_deref())?;
        refuse::read_with_write_headers(&req.headers)?;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let v = blocking(move || t.buckets(|st, _| find_version(st, &bucket, &key, vid.as_deref()))).await?;
        read_conditions!(i).check(&v)?;
        let (range, parts_count) = read_range(&v, i.range.as_ref(), i.part_number)?;
        let (len, content_range) = match &range {
            Some(r) => (r.end - r.start, Some(format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), v.size))),
            None => (v.size, None),
        };
        let sums = checksum_output(i.checksum_mode.as_ref(), &v, range.is_some() && parts_count.is_none());
        let h = served!(&v, i);
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(v.etag.clone())),
            last_modified: Some(timestamp(v.time_ms)),
            content_type: h.content_type,
            cache_control: h.cache_control,
            content_disposition: h.content_disposition,
            content_encoding: h.content_encoding,
            content_language: h.content_language,
            expires: h.expires,
            server_side_encryption: h.sse,
            parts_count,
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            checksum_type: sums.checksum_type,
            metadata: (!v.metadata.is_empty()).then(|| v.metadata.clone().into_iter().collect()),
            version_id: Some(v.id),
            ..Default::default()
        }))
    }

    /// What a HEAD says and more, by attribute: ETag, checksums, part count and sizes, size, storage class.
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        refuse::read_with_customer_key(i.sse_customer_algorithm.as_deref(), i.sse_customer_key.as_deref())?;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let v = blocking(move || t.buckets(|st, _| find_version(st, &bucket, &key, vid.as_deref()))).await?;
        // One header, `x-amz-object-attributes: ETag,Checksum`, may arrive as one element.
        let asked = |a: &str| i.object_attributes.iter().flat_map(|x| x.as_str().split(',')).any(|x| x.trim() == a);
        let parts = (!v.parts.is_empty()).then(|| {
            let after = i.part_number_marker.unwrap_or(0).max(0) as usize;
            let max = i.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
            let page: Vec<ObjectPart> = v
                .parts
                .iter()
                .enumerate()
                .skip(after)
                .take(max)
                .map(|(n, size)| ObjectPart {
                    part_number: Some(n as i32 + 1),
                    size: Some(*size as i64),
                    ..Default::default()
                })
                .collect();
            let last = page.last().and_then(|p| p.part_number).unwrap_or(after as i32);
            GetObjectAttributesParts {
                is_truncated: Some((last as usize) < v.parts.len()),
                max_parts: Some(max as i32),
                next_part_number_marker: Some(last),
                part_number_marker: Some(after as i32),
                parts: Some(page),
                total_parts_count: Some(v.parts.len() as i32),
            }
        });
        let sums = checksums::as_output(&v.checksums);
        let has_sum = sums != Checksum::default();
        Ok(S3Response::new(GetObjectAttributesOutput {
            e_tag: asked(ObjectAttributes::ETAG).then(|| ETag::Strong(v.etag.clone())),
            checksum: (asked(ObjectAttributes::CHECKSUM) && has_sum).then_some(sums),
            object_parts: if asked(ObjectAttributes::OBJECT_PARTS) { parts } else { None },
            object_size: asked(ObjectAttributes::OBJECT_SIZE).then_some(v.size as i64),
            storage_class: asked(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from_static(StorageClass::STANDARD)),
            last_modified: Some(timestamp(v.time_ms)),
            version_id: Some(v.id.clone()),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        if i.bypass_governance_retention == Some(true) {
            return Err(s3_error!(
                NotImplemented,
                "x-amz-bypass-governance-retention: object lock is not supported yet"
            ));
        }
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let (if_match, if_modified, if_size) =
            (i.if_match.clone(), i.if_match_last_modified_time.clone(), i.if_match_size);
        let out = blocking(move || {
            t.buckets(|st, repo| {
                let b = st.buckets.get(&bucket).ok_or_else(|| no_bucket(&bucket))?;
                // The conditions hold for what the delete removes: the version named, else the current one.
                let target = match vid.as_deref() {
                    Some(v) => b.objects.get(&key).and_then(|vs| vs.iter().find(|x| x.id == v)),
                    None => b.current(&key),
                };
                conditions::delete(if_match.as_ref(), if_modified.as_ref(), if_size, target, &key)?;
                delete_one(st, repo, &bucket, &key, vid.as_deref())
            })
        })
        .await?;
        Ok(S3Response::new(out))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let quiet = i.delete.quiet.unwrap_or(false);
        if i.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "{} keys: DeleteObjects takes at most 1,000", i.delete.objects.len()));
        }
        let (t, bucket, objects) = (c.tenant.clone(), i.bucket.clone(), i.delete.objects);
        let out = blocking(move || {
            t.buckets(|st, repo| {
                if !st.buckets.contains_key(&bucket) {
                    return Err(no_bucket(&bucket));
                }
                let (mut deleted, mut errors) = (Vec::new(), Vec::new());
                for o in objects {
                    match delete_one(st, repo, &bucket, &o.key, o.version_id.as_deref()) {
                        Ok(d) => deleted.push(DeletedObject {
                            key: Some(o.key),
                            version_id: o.version_id,
                            delete_marker: d.delete_marker,
                            delete_marker_version_id: d.version_id,
                        }),
                        Err(e) => errors.push(s3s::dto::Error {
                            code: Some(e.code().as_str().to_string()),
                            key: Some(o.key),
                            message: e.message().map(str::to_string),
                            version_id: o.version_id,
                        }),
                    }
                }
                Ok(DeleteObjectsOutput {
                    deleted: (!quiet).then_some(deleted),
                    errors: Some(errors),
                    ..Default::default()
                })
            })
        })
        .await?;
        Ok(S3Response::new(out))
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let names = Names::of(i.encoding_type.as_ref())?;
        let max = max_keys(i.max_keys);
        let after = match &i.continuation_token {
            Some(tok) => Some(unhex_token(tok)?),
            None => i.start_after.clone(),
        };
        let prefix = i.prefix.clone().unwrap_or_default();
        let (t, bucket, delim) = (c.tenant.clone(), i.bucket.clone(), i.delimiter.clone());
        let (p2, b2) = (prefix.clone(), bucket.clone());
        let owned = i.fetch_owner.unwrap_or(false).then(|| owner(&c.tenant_name()));
        let (objs, prefixes, next) = blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&b2).ok_or_else(|| no_bucket(&b2))?;
                let (o, p, n) = list_keys(b, &p2, delim.as_deref(), after.as_deref(), max);
                let objs =
                    o.into_iter().map(|(k, v)| object_entry(names.name(k), v, owned.clone())).collect::<Vec<_>>();
                Ok((objs, p, n))
            })
        })
        .await?;
        let key_count = (objs.len() + prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket),
            prefix: Some(names.name(&prefix)),
            delimiter: names.opt(i.delimiter.as_deref()),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: i.continuation_token,
            start_after: names.opt(i.start_after.as_deref()),
            is_truncated: Some(next.is_some()),
            next_continuation_token: next.as_deref().map(hex_token),
            contents: Some(objs),
            common_prefixes: Some(
                prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(names.name(&p)) }).collect(),
            ),
            encoding_type: names.echo(),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let names = Names::of(req.input.encoding_type.as_ref())?;
        let marker = req.input.marker.clone();
        let prefix = req.input.prefix.clone().unwrap_or_default();
        // Version 1 names each object's owner always.
        let v2 = self
            .list_objects_v2(req.map_input(|v1| ListObjectsV2Input { fetch_owner: Some(true), ..v1.into() }))
            .await?
            .output;
        let next_marker = v2.next_continuation_token.as_deref().map(unhex_token).transpose()?;
        Ok(S3Response::new(ListObjectsOutput {
            name: v2.name,
            // Version 1 returns its Prefix as given, encoded or not (SDKs decode only the other names).
            prefix: Some(prefix),
            marker: Some(names.opt(marker.as_deref()).unwrap_or_default()),
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            contents: v2.contents,
            common_prefixes: v2.common_prefixes,
            delimiter: v2.delimiter,
            encoding_type: v2.encoding_type,
            next_marker: next_marker.map(|m| names.name(&m)),
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let names = Names::of(i.encoding_type.as_ref())?;
        if i.delimiter.as_deref().is_some_and(|d| !d.is_empty()) {
            return Err(s3_error!(NotImplemented, "ListObjectVersions with a delimiter"));
        }
        if i.version_id_marker.is_some() && i.key_marker.is_none() {
            return Err(s3_error!(InvalidArgument, "a version-id-marker needs a key-marker"));
        }
        let max = max_keys(i.max_keys);
        let prefix = i.prefix.clone().unwrap_or_default();
        let (t, bucket, p2) = (c.tenant.clone(), i.bucket.clone(), prefix.clone());
        let (key_marker, vid_marker) = (i.key_marker.clone(), i.version_id_marker.clone());
        let who = owner(&c.tenant_name());
        let (versions, markers, next) = blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&bucket).ok_or_else(|| no_bucket(&bucket))?;
                let page = version_page(b, &p2, key_marker.as_deref(), vid_marker.as_deref(), max)?;
                let (mut versions, mut markers) = (Vec::new(), Vec::new());
                for (key, v, latest) in &page.items {
                    if v.is_delete_marker() {
                        markers.push(DeleteMarkerEntry {
                            key: Some(names.name(key)),
                            version_id: Some(v.id.clone()),
                            is_latest: Some(*latest),
                            last_modified: Some(timestamp(v.time_ms)),
                            owner: Some(who.clone()),
                        });
                    } else {
                        versions.push(ObjectVersion {
                            key: Some(names.name(key)),
                            version_id: Some(v.id.clone()),
                            is_latest: Some(*latest),
                            last_modified: Some(timestamp(v.time_ms)),
                            e_tag: Some(ETag::Strong(v.etag.clone())),
                            size: Some(v.size as i64),
                            owner: Some(who.clone()),
                            storage_class: Some(ObjectVersionStorageClass::from_static(
                                ObjectVersionStorageClass::STANDARD,
                            )),
                            ..Default::default()
                        });
                    }
                }
                Ok((versions, markers, page.next))
            })
        })
        .await?;
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(names.name(&prefix)),
            max_keys: Some(max as i32),
            key_marker: names.opt(i.key_marker.as_deref()),
            version_id_marker: i.version_id_marker,
            is_truncated: Some(next.is_some()),
            next_key_marker: next.as_ref().map(|(k, _)| names.name(k)),
            next_version_id_marker: next.map(|(_, v)| v),
            versions: Some(versions),
            delete_markers: Some(markers),
            encoding_type: names.echo(),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let c = self.caller(&req).await?;
        refuse::copy(&req.input)?;
        let i = req.input;
        let CopySource::Bucket { bucket: sb, key: sk, version_id: sv } = &i.copy_source else {
            return Err(s3_error!(NotImplemented, "copies from access points or outposts"));
        };
        let (sb, sk, sv) = (sb.to_string(), sk.to_string(), sv.as_deref().map(str::to_string));
        let replace = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let (t, bucket, key) = (c.tenant.clone(), i.bucket.clone(), i.key.clone());
        let (content_type, metadata) = (i.content_type.clone(), i.metadata.clone());
        let headers = standard_headers(
            i.cache_control.as_deref(),
            i.content_disposition.as_deref(),
            i.content_encoding.as_deref(),
            i.content_language.as_deref(),
            i.expires.as_ref(),
        );
        let sse = i.server_side_encryption.clone();
        let conds = (
            i.copy_source_if_match.clone(),
            i.copy_source_if_none_match.clone(),
            i.copy_source_if_modified_since.clone(),
            i.copy_source_if_unmodified_since.clone(),
        );
        let v = blocking(move || {
            t.buckets(|st, repo| {
                // Bucket names are the caller's tenant's: another tenant's bucket is simply not found.
                let src = find_version(st, &sb, &sk, sv.as_deref())?;
                let read = conditions::Read {
                    if_match: conds.0.as_ref(),
                    if_none_match: conds.1.as_ref(),
                    if_modified_since: conds.2.as_ref(),
                    if_unmodified_since: conds.3.as_ref(),
                };
                conditions::copy_source(&read, &src)?;
                if !st.buckets.contains_key(&bucket) {
                    return Err(no_bucket(&bucket));
                }
                if !replace && sb == bucket && sk == key && sv.is_none() {
                    return Err(s3_error!(
                        InvalidRequest,
                        "copying an object onto itself needs a metadata change (x-amz-metadata-directive: REPLACE)"
                    ));
                }
                // The copy names the same tree: no bytes are read or written.
                let mut v = Version { id: random_id(), time_ms: now_ms(), upload: None, ..src };
                if replace {
                    v.content_type = content_type;
                    v.metadata = metadata.unwrap_or_default().into_iter().collect();
                    v.headers = headers;
                }
                if let Some(sse) = &sse {
                    v.headers.insert("x-amz-server-side-encryption".into(), sse.as_str().to_string());
                }
                buckets::append(repo, st, Record::Put { bucket, key, version: v.clone() }).map_err(s3err)?;
                Ok(v)
            })
        })
        .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(v.etag)),
                last_modified: Some(timestamp(v.time_ms)),
                ..Default::default()
            }),
            server_side_encryption: v
                .headers
                .get("x-amz-server-side-encryption")
                .cloned()
                .map(ServerSideEncryption::from),
            version_id: Some(v.id),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let c = self.caller(&req).await?;
        refuse::create_upload(&req.input)?;
        let i = req.input;
        let upload = random_id();
        let headers = standard_headers(
            i.cache_control.as_deref(),
            i.content_disposition.as_deref(),
            i.content_encoding.as_deref(),
            i.content_language.as_deref(),
            i.expires.as_ref(),
        );
        let mut headers = headers;
        if let Some(sse) = &i.server_side_encryption {
            headers.insert("x-amz-server-side-encryption".into(), sse.as_str().to_string());
        }
        let checksum_algorithm = match &i.checksum_algorithm {
            Some(a) => Some(
                checksums::algorithm(a.as_str())
                    .ok_or_else(|| s3_error!(InvalidArgument, "checksum algorithm {}: unknown", a.as_str()))?,
            ),
            None => None,
        };
        if checksum_algorithm == Some("CRC64NVME") {
            return Err(s3_error!(NotImplemented, "CRC64NVME for multipart uploads (full-object checksums only)"));
        }
        if i.checksum_type.as_ref().is_some_and(|t| t.as_str() == ChecksumType::FULL_OBJECT) {
            return Err(s3_error!(NotImplemented, "full-object checksums of multipart uploads (COMPOSITE only)"));
        }
        let info = Upload {
            checksum_algorithm: checksum_algorithm.map(str::to_string),
            key: i.key.clone(),
            started_ms: now_ms(),
            content_type: i.content_type,
            metadata: i.metadata.unwrap_or_default().into_iter().collect(),
            headers,
            parts: BTreeMap::new(),
        };
        let (t, bucket, u2) = (c.tenant.clone(), i.bucket.clone(), upload.clone());
        blocking(move || {
            t.buckets(|st, repo| {
                if !st.buckets.contains_key(&bucket) {
                    return Err(no_bucket(&bucket));
                }
                buckets::append(repo, st, Record::StartUpload { bucket, upload: u2, info }).map_err(s3err)
            })
        })
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(upload),
            checksum_algorithm: checksum_algorithm.map(|a| ChecksumAlgorithm::from(a.to_string())),
            checksum_type: checksum_algorithm.map(|_| ChecksumType::from_static(ChecksumType::COMPOSITE)),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, mut req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let c = self.caller(&req).await?;
        refuse::part(&req.input)?;
        let wanted = Wanted::from_headers(&req.headers)?;
        let i = &mut req.input;
        if !(1..=MAX_PARTS).contains(&i.part_number) {
            return Err(s3_error!(InvalidArgument, "part numbers run from 1 to {MAX_PARTS}"));
        }
        let (t, bucket, upload, key) = (c.tenant.clone(), i.bucket.clone(), i.upload_id.clone(), i.key.clone());
        let (b2, u2, k2) = (bucket.clone(), upload.clone(), key.clone());
        let has_first =
            blocking(move || t.buckets(|st, _| upload_of(st, &b2, &u2, &k2).map(|u| u.parts.contains_key(&1)))).await?;
        if has_first && i.part_number != 1 {
            // Part 1 is stored; if it never told this server its layout (it came before a restart), no later
            // part should wait for it.
            let mut models = c.tenant.s3_models.lock().expect("part models");
            let tx = models.entry(upload.clone()).or_default();
            if tx.borrow().is_none() {
                tx.send_replace(Some(None));
            }
        }
        let len = i.content_length.or_else(|| decoded_length(&req.headers));
        let plan = part_plan(&c.tenant, &upload, req.input.part_number as u32).await;
        let i = &mut req.input;
        let number = i.part_number as u32;
        let verified: std::sync::Arc<std::sync::Mutex<BTreeMap<String, String>>> = Default::default();
        let told = verified.clone();
        let record: Recorder = Box::new(move |t, w, sums| {
            *told.lock().expect("part checksums") = sums.clone();
            let part = Part {
                tree: w.tree.to_hex(),
                size: w.size,
                etag: hex::encode(w.md5),
                time_ms: now_ms(),
                checksums: sums,
            };
            t.buckets(|st, repo| {
                // The upload may have been completed or aborted while the part streamed in.
                upload_of(st, &bucket, &upload, &key)?;
                buckets::append(repo, st, Record::Part { bucket, upload, number, part }).map_err(s3err)
            })?;
            Ok(None)
        });
        let body = i.body.take();
        let sums = (wanted, req.trailing_headers.take());
        let i = &req.input;
        let (w, _) = self.store_body(&c, &i.key, len, body, i.content_md5.as_deref(), sums, plan, record).await?;
        let etag = hex::encode(w.md5);
        let sums = checksums::as_output(&verified.lock().expect("part checksums"));
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        refuse::read_with_customer_key(i.sse_customer_algorithm.as_deref(), i.sse_customer_key.as_deref())?;
        // A checksum of the whole object is the composite of the parts' (S3's COMPOSITE type); it is compared
        // with the one the parts' verified checksums give.
        let sent: Vec<(&'static str, String)> = [
            ("CRC32", &i.checksum_crc32),
            ("CRC32C", &i.checksum_crc32c),
            ("CRC64NVME", &i.checksum_crc64nvme),
            ("SHA1", &i.checksum_sha1),
            ("SHA256", &i.checksum_sha256),
        ]
        .into_iter()
        .filter_map(|(a, v)| v.clone().map(|v| (a, v)))
        .collect();
        if sent.len() > 1 {
            return Err(s3_error!(InvalidRequest, "a completion names one checksum of the whole object at most"));
        }
        if i.checksum_type.as_ref().is_some_and(|t| t.as_str() == ChecksumType::FULL_OBJECT) {
            return Err(s3_error!(NotImplemented, "full-object checksums of multipart uploads (COMPOSITE only)"));
        }
        let sent = sent.into_iter().next();
        let (if_match, if_none_match) = (i.if_match.clone(), i.if_none_match.clone());
        let listed: Vec<(i32, String, Checksum)> = i
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let sums = Checksum {
                    checksum_crc32: p.checksum_crc32,
                    checksum_crc32c: p.checksum_crc32c,
                    checksum_crc64nvme: p.checksum_crc64nvme,
                    checksum_sha1: p.checksum_sha1,
                    checksum_sha256: p.checksum_sha256,
                    ..Default::default()
                };
                (p.part_number.unwrap_or(0), p.e_tag.map(|e| e.value().to_string()).unwrap_or_default(), sums)
            })
            .collect();
        if listed.is_empty() {
            return Err(s3_error!(MalformedXML, "a completion must list the parts"));
        }
        if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(s3_error!(InvalidPartOrder, "parts must be listed in ascending order"));
        }
        let (t, bucket, upload, key) = (c.tenant.clone(), i.bucket.clone(), i.upload_id.clone(), i.key.clone());
        let (app, appender) = (self.0.clone(), c.token.role == Role::Appender);
        let v = blocking(move || {
            // The vault's shared lock: no prune between the new tree's pack and the record naming it.
            let _lock = app.base.lock(false, "s3 complete", &|_| {}).map_err(s3err)?;
            t.buckets(|st, repo| {
                // A completion retried after it succeeded (its answer was lost) gets the same answer.
                let done = st
                    .buckets
                    .get(&bucket)
                    .and_then(|b| b.objects.get(&key))
                    .and_then(|vs| vs.iter().rev().find(|v| v.upload.as_deref() == Some(upload.as_str())).cloned());
                if let (Some(v), Err(_)) = (done, upload_of(st, &bucket, &upload, &key)) {
                    return Ok((v, Vec::new()));
                }
                let u = upload_of(st, &bucket, &upload, &key)?;
                let current = st.buckets[&bucket].current(&key);
                if appender && current.is_some() {
                    return Err(s3_error!(AccessDenied, "an appender key may not overwrite {key}, which exists"));
                }
                conditions::write(if_match.as_ref(), if_none_match.as_ref(), current, &key)?;
                let mut trees = Vec::new();
                let (mut size, mut md5s, mut sizes) = (0u64, Vec::new(), Vec::new());
                for (n, (number, etag, sums)) in listed.iter().enumerate() {
                    let p = u.parts.get(&(*number as u32)).filter(|p| p.etag == *etag).ok_or_else(|| {
                        s3_error!(InvalidPart, "part {number} with ETag {etag} was not uploaded to {upload}")
                    })?;
                    // A part's checksum in the list must be the one its upload verified.
                    let stored = checksums::as_output(&p.checksums);
                    let pairs = [
                        (&sums.checksum_crc32, &stored.checksum_crc32),
                        (&sums.checksum_crc32c, &stored.checksum_crc32c),
                        (&sums.checksum_crc64nvme, &stored.checksum_crc64nvme),
                        (&sums.checksum_sha1, &stored.checksum_sha1),
                        (&sums.checksum_sha256, &stored.checksum_sha256),
                    ];
                    if pairs.iter().any(|(listed, stored)| listed.is_some() && listed != stored) {
                        return Err(s3_error!(
                            InvalidPart,
                            "part {number}: the checksum listed is not the one its upload was verified with"
                        ));
                    }
                    sizes.push(p.size);
                    if n + 1 < listed.len() && p.size < MIN_PART {
                        return Err(s3_error!(
                            EntityTooSmall,
                            "part {number} is {} bytes; all but the last need 5 MiB",
                            p.size
                        ));
                    }
                    trees.push(ChunkId::from_hex(&p.tree).map_err(s3err)?);
                    size += p.size;
                    md5s.extend(hex::decode(&p.etag).unwrap_or_default());
                }
                let object_sums = object_checksum(u, &listed, sent.as_ref())?;
                use md5::Digest;
                let etag = format!("{}-{}", hex::encode(md5::Md5::digest(&md5s)), listed.len());
                let (tree, entries) = objects::concat(repo, &trees, size).map_err(s3err)?;
                let version = Version {
                    id: random_id(),
                    tree: Some(tree.to_hex()),
                    size,
                    etag,
                    time_ms: now_ms(),
                    content_type: u.content_type.clone(),
                    metadata: u.metadata.clone(),
                    upload: Some(upload.clone()),
                    parts: sizes,
                    headers: u.headers.clone(),
                    checksums: object_sums,
                };
                buckets::append(repo, st, Record::Put { bucket: bucket.clone(), key, version: version.clone() })
                    .map_err(s3err)?;
                buckets::append(repo, st, Record::EndUpload { bucket, upload: upload.clone() }).map_err(s3err)?;
                t.s3_models.lock().expect("part models").remove(&upload);
                Ok((version, entries))
            })
        })
        .await?;
        // The concatenated tree's index file is in the catalog already (written by the core).
        let (v, _entries) = v;
        let sums = checksums::as_output(&v.checksums);
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            checksum_type: (!v.checksums.is_empty()).then(|| ChecksumType::from_static(ChecksumType::COMPOSITE)),
            bucket: Some(i.bucket.clone()),
            key: Some(i.key),
            e_tag: Some(ETag::Strong(v.etag)),
            version_id: Some(v.id),
            location: Some(format!("/{}", i.bucket)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let (t, bucket, upload, key) = (c.tenant.clone(), i.bucket, i.upload_id, i.key);
        blocking(move || {
            t.buckets(|st, repo| {
                upload_of(st, &bucket, &upload, &key)?;
                t.s3_models.lock().expect("part models").remove(&upload);
                buckets::append(repo, st, Record::EndUpload { bucket, upload }).map_err(s3err)
            })
        })
        .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let max = i.max_parts.map(|m| m.clamp(1, 1000)).unwrap_or(1000) as usize;
        let after = i.part_number_marker.unwrap_or(0).max(0) as u32;
        let (t, bucket, upload, key) = (c.tenant.clone(), i.bucket.clone(), i.upload_id.clone(), i.key.clone());
        let (parts, next) = blocking(move || {
            t.buckets(|st, _| {
                let u = upload_of(st, &bucket, &upload, &key)?;
                let mut parts: Vec<NumberedPart> = u.parts.range(after + 1..).map(|(n, p)| (*n, p.clone())).collect();
                let next = (parts.len() > max).then(|| parts[max - 1].0);
                parts.truncate(max);
                Ok((parts, next))
            })
        })
        .await?;
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: i.part_number_marker,
            is_truncated: Some(next.is_some()),
            next_part_number_marker: next.map(|n| n as i32),
            parts: Some(
                parts
                    .into_iter()
                    .map(|(n, p)| s3s::dto::Part {
                        part_number: Some(n as i32),
                        e_tag: Some(ETag::Strong(p.etag)),
                        size: Some(p.size as i64),
                        last_modified: Some(timestamp(p.time_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let prefix = i.prefix.clone().unwrap_or_default();
        let (t, bucket, p2) = (c.tenant.clone(), i.bucket.clone(), prefix.clone());
        let uploads = blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&bucket).ok_or_else(|| no_bucket(&bucket))?;
                let mut v: Vec<MultipartUpload> = b
                    .uploads
                    .iter()
                    .filter(|(_, u)| u.key.starts_with(&p2))
                    .map(|(id, u)| MultipartUpload {
                        key: Some(u.key.clone()),
                        upload_id: Some(id.clone()),
                        initiated: Some(timestamp(u.started_ms)),
                        ..Default::default()
                    })
                    .collect();
                v.sort_by(|a, b| (&a.key, &a.initiated).cmp(&(&b.key, &b.initiated)));
                Ok(v)
            })
        })
        .await?;
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: Some(prefix),
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}

/// A part of an upload and its number, as ListParts pages them.
type NumberedPart = (u32, Part);

/// The part of an object a GET or HEAD returns: a `Range`, or a `partNumber` (one part of a multipart object,
/// with the object's part count; part 1 of any other object is all of it), or everything.
fn read_range(
    v: &Version,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<(Option<std::ops::Range<u64>>, Option<i32>)> {
    match (range, part_number) {
        (Some(_), Some(_)) => Err(s3_error!(InvalidRequest, "Range and partNumber cannot both be given")),
        (Some(r), None) => {
            let r = r.check(v.size)?;
            Ok((Some(r.start..r.end), None))
        }
        (None, Some(n)) => {
            if n < 1 {
                return Err(s3_error!(InvalidArgument, "partNumber {n}: parts run from 1"));
            }
            if v.parts.is_empty() {
                return if n == 1 { Ok((None, None)) } else { Err(no_part(n, 1)) };
            }
            let count = v.parts.len();
            let i = n as usize - 1;
            if i >= count {
                return Err(no_part(n, count));
            }
            let start: u64 = v.parts[..i].iter().sum();
            Ok((Some(start..start + v.parts[i]), Some(count as i32)))
        }
        (None, None) => Ok((None, (!v.parts.is_empty()).then_some(v.parts.len() as i32))),
    }
}

fn no_part(n: i32, count: usize) -> s3s::S3Error {
    s3_error!(InvalidPart, "partNumber {n}: the object has {count} part(s)")
}

/// The checksums a read returns: with `ChecksumMode: ENABLED`, of the whole object (not for a byte range).
fn checksum_output(mode: Option<&ChecksumMode>, v: &Version, partial: bool) -> Checksum {
    let enabled = mode.is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
    if enabled && !partial {
        checksums::as_output(&v.checksums)
    } else {
        Checksum::default()
    }
}

/// The standard headers a read returns: the version's, overridden by the request's `response-*` parameters.
struct Served {
    sse: Option<ServerSideEncryption>,
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
}

impl Served {
    #[allow(clippy::too_many_arguments)]
    fn build(
        v: &Version,
        content_type: Option<&String>,
        cache_control: Option<&String>,
        disposition: Option<&String>,
        encoding: Option<&String>,
        language: Option<&String>,
        expires: Option<&Timestamp>,
    ) -> Served {
        let kept = |name: &str| v.headers.get(name).cloned();
        Served {
            sse: kept("x-amz-server-side-encryption").map(ServerSideEncryption::from),
            content_type: content_type.cloned().or_else(|| v.content_type.clone()),
            cache_control: cache_control.cloned().or_else(|| kept("cache-control")),
            content_disposition: disposition.cloned().or_else(|| kept("content-disposition")),
            content_encoding: encoding.cloned().or_else(|| kept("content-encoding")),
            content_language: language.cloned().or_else(|| kept("content-language")),
            expires: expires
                .cloned()
                .or_else(|| kept("expires").and_then(|e| Timestamp::parse(TimestampFormat::HttpDate, &e).ok())),
        }
    }
}

/// GET and HEAD carry the same conditions and `response-*` parameters under the same names (s3s gives each
/// its own input type): one reading of them serves both.
macro_rules! read_conditions {
    ($i:expr) => {
        conditions::Read {
            if_match: $i.if_match.as_ref(),
            if_none_match: $i.if_none_match.as_ref(),
            if_modified_since: $i.if_modified_since.as_ref(),
            if_unmodified_since: $i.if_unmodified_since.as_ref(),
        }
    };
}
use read_conditions;

macro_rules! served {
    ($v:expr, $i:expr) => {
        Served::build(
            $v,
            $i.response_content_type.as_ref(),
            $i.response_cache_control.as_ref(),
            $i.response_content_disposition.as_ref(),
            $i.response_content_encoding.as_ref(),
            $i.response_content_language.as_ref(),
            $i.response_expires.as_ref(),
        )
    };
}
use served;

/// A completed multipart object's checksum: the composite of its listed parts' verified checksums, for the
/// algorithm the completion sent (which must then match) or the upload declared (every part must have one).
fn object_checksum(
    u: &Upload,
    listed: &[(i32, String, Checksum)],
    sent: Option<&(&'static str, String)>,
) -> S3Result<BTreeMap<String, String>> {
    let Some(alg) = sent.map(|(a, _)| *a).or(u.checksum_algorithm.as_deref().and_then(checksums::algorithm)) else {
        return Ok(BTreeMap::new());
    };
    let of_parts: Option<Vec<&str>> = listed
        .iter()
        .map(|(n, _, _)| u.parts.get(&(*n as u32)).and_then(|p| p.checksums.get(alg)).map(String::as_str))
        .collect();
    let Some(of_parts) = of_parts else {
        return Err(match sent {
            Some((_, v)) => s3_error!(BadDigest, "{alg} {v}: not every part was uploaded with a {alg} checksum"),
            None => {
                s3_error!(InvalidRequest, "the upload declared {alg} checksums and a part was uploaded without one")
            }
        });
    };
    let c = checksums::composite(alg, &of_parts)?;
    if let Some((_, v)) = sent {
        let bare = c.strip_suffix(&format!("-{}", of_parts.len())).unwrap_or(&c);
        if *v != c && v != bare {
            return Err(s3_error!(BadDigest, "{alg} {v} is not the parts' composite {c}"));
        }
    }
    Ok(BTreeMap::from([(alg.to_string(), c)]))
}
