//! The S3 operations, each over the caller's tenant (the access check has passed before any of them runs).

use super::body::{decoded_length, ChanBody};
use super::errors::{no_bucket, no_key, s3err, slow_down};
use super::listing::{hex_token, list_keys, max_keys, object_entry, unhex_token};
use super::parts::{part_plan, PartPlan};
use super::state::{delete_one, find_version, upload_of};
use super::trace::note;
use super::write::{version_of, Recorder};
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
        let t = c.tenant.clone();
        let list = blocking(move || {
            t.buckets(|st, _| {
                Ok(st
                    .buckets
                    .iter()
                    .map(|(n, b)| Bucket {
                        name: Some(n.clone()),
                        creation_date: Some(timestamp(b.created_ms)),
                        ..Default::default()
                    })
                    .collect::<Vec<_>>())
            })
        })
        .await?;
        Ok(S3Response::new(ListBucketsOutput { buckets: Some(list), ..Default::default() }))
    }

    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        let c = self.caller(&req).await?;
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
                if !b.is_empty() {
                    return Err(s3_error!(
                        BucketNotEmpty,
                        "bucket {name} holds objects, versions kept by retention, or uploads in progress"
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
        let i = &mut req.input;
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        self.require_bucket(&c, &bucket).await?;
        let len = i.content_length.or_else(|| decoded_length(&req.headers));
        let i = &mut req.input;
        let (ct, meta, appender) = (i.content_type.clone(), i.metadata.take(), c.token.role == Role::Appender);
        let k2 = key.clone();
        let record: Recorder = Box::new(move |t, w| {
            let v = version_of(w, hex::encode(w.md5), ct, meta);
            t.put_version(bucket, k2, v.clone(), appender)?;
            Ok(Some(v))
        });
        let body = i.body.take();
        let (_, v) = self.store_body(&c, &key, len, body, i.content_md5.as_deref(), PartPlan::Object, record).await?;
        let out = v.expect("a put records a version");
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(out.etag)),
            version_id: Some(out.id),
            size: Some(out.size as i64),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let v = blocking(move || t.buckets(|st, _| find_version(st, &bucket, &key, vid.as_deref()))).await?;
        let range = match &i.range {
            Some(r) => Some(r.check(v.size)?),
            None => None,
        };
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
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::new(ChanBody { rx, left: len as usize })),
            content_length: Some(len as i64),
            content_range: range.map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), v.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(v.etag.clone())),
            last_modified: Some(timestamp(v.time_ms)),
            content_type: v.content_type.clone(),
            metadata: (!v.metadata.is_empty()).then(|| v.metadata.clone().into_iter().collect()),
            version_id: Some(v.id.clone()),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let v = blocking(move || t.buckets(|st, _| find_version(st, &bucket, &key, vid.as_deref()))).await?;
        let (len, content_range) = match &i.range {
            Some(r) => {
                let r = r.check(v.size)?;
                (r.end - r.start, Some(format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), v.size)))
            }
            None => (v.size, None),
        };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(v.etag.clone())),
            last_modified: Some(timestamp(v.time_ms)),
            content_type: v.content_type.clone(),
            metadata: (!v.metadata.is_empty()).then(|| v.metadata.clone().into_iter().collect()),
            version_id: Some(v.id),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = &req.input;
        let (t, bucket, key, vid) = (c.tenant.clone(), i.bucket.clone(), i.key.clone(), i.version_id.clone());
        let out = blocking(move || t.buckets(|st, repo| delete_one(st, repo, &bucket, &key, vid.as_deref()))).await?;
        Ok(S3Response::new(out))
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let quiet = i.delete.quiet.unwrap_or(false);
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
        let max = max_keys(i.max_keys);
        let after = match &i.continuation_token {
            Some(tok) => Some(unhex_token(tok)?),
            None => i.start_after.clone(),
        };
        let prefix = i.prefix.clone().unwrap_or_default();
        let (t, bucket, delim) = (c.tenant.clone(), i.bucket.clone(), i.delimiter.clone());
        let (p2, b2) = (prefix.clone(), bucket.clone());
        let (objs, prefixes, next) = blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&b2).ok_or_else(|| no_bucket(&b2))?;
                let (o, p, n) = list_keys(b, &p2, delim.as_deref(), after.as_deref(), max);
                Ok((o.into_iter().map(|(k, v)| object_entry(k, v)).collect::<Vec<_>>(), p, n))
            })
        })
        .await?;
        let key_count = (objs.len() + prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(bucket),
            prefix: Some(prefix),
            delimiter: i.delimiter,
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: i.continuation_token,
            start_after: i.start_after,
            is_truncated: Some(next.is_some()),
            next_continuation_token: next.as_deref().map(hex_token),
            contents: Some(objs),
            common_prefixes: Some(prefixes.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            ..Default::default()
        }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        let marker = req.input.marker.clone();
        let delimiter = req.input.delimiter.clone();
        let v2 = self.list_objects_v2(req.map_input(ListObjectsV2Input::from)).await?.output;
        let next_marker = v2.next_continuation_token.as_deref().map(unhex_token).transpose()?;
        Ok(S3Response::new(ListObjectsOutput {
            name: v2.name,
            prefix: v2.prefix,
            marker,
            max_keys: v2.max_keys,
            is_truncated: v2.is_truncated,
            contents: v2.contents,
            common_prefixes: v2.common_prefixes,
            delimiter,
            next_marker,
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let max = max_keys(i.max_keys);
        let prefix = i.prefix.clone().unwrap_or_default();
        let (t, bucket, p2, after) = (c.tenant.clone(), i.bucket.clone(), prefix.clone(), i.key_marker.clone());
        let (versions, markers, next) = blocking(move || {
            t.buckets(|st, _| {
                let b = st.buckets.get(&bucket).ok_or_else(|| no_bucket(&bucket))?;
                let (mut versions, mut markers, mut next, mut last) = (Vec::new(), Vec::new(), None, None);
                let from = after.map(std::ops::Bound::Excluded).unwrap_or(std::ops::Bound::Unbounded);
                for (key, vs) in b.objects.range::<String, _>((from, std::ops::Bound::Unbounded)) {
                    if !key.starts_with(&p2) {
                        continue;
                    }
                    if versions.len() + markers.len() + vs.len() > max && !(versions.is_empty() && markers.is_empty()) {
                        // The last key returned: the next page starts after it.
                        next = last.clone();
                        break;
                    }
                    last = Some(key.clone());
                    for (n, v) in vs.iter().enumerate().rev() {
                        let latest = n + 1 == vs.len();
                        if v.is_delete_marker() {
                            markers.push(DeleteMarkerEntry {
                                key: Some(key.clone()),
                                version_id: Some(v.id.clone()),
                                is_latest: Some(latest),
                                last_modified: Some(timestamp(v.time_ms)),
                                owner: None,
                            });
                        } else {
                            versions.push(ObjectVersion {
                                key: Some(key.clone()),
                                version_id: Some(v.id.clone()),
                                is_latest: Some(latest),
                                last_modified: Some(timestamp(v.time_ms)),
                                e_tag: Some(ETag::Strong(v.etag.clone())),
                                size: Some(v.size as i64),
                                ..Default::default()
                            });
                        }
                    }
                }
                Ok((versions, markers, next))
            })
        })
        .await?;
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(prefix),
            max_keys: Some(max as i32),
            key_marker: i.key_marker,
            is_truncated: Some(next.is_some()),
            next_key_marker: next,
            versions: Some(versions),
            delete_markers: Some(markers),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let CopySource::Bucket { bucket: sb, key: sk, version_id: sv } = &i.copy_source else {
            return Err(s3_error!(NotImplemented, "copies from access points or outposts"));
        };
        let (sb, sk, sv) = (sb.to_string(), sk.to_string(), sv.as_deref().map(str::to_string));
        let replace = i.metadata_directive.as_ref().is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let (t, bucket, key) = (c.tenant.clone(), i.bucket.clone(), i.key.clone());
        let (content_type, metadata) = (i.content_type.clone(), i.metadata.clone());
        let v = blocking(move || {
            t.buckets(|st, repo| {
                // Bucket names are the caller's tenant's: another tenant's bucket is simply not found.
                let src = find_version(st, &sb, &sk, sv.as_deref())?;
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
            version_id: Some(v.id),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let upload = random_id();
        let info = Upload {
            key: i.key.clone(),
            started_ms: now_ms(),
            content_type: i.content_type,
            metadata: i.metadata.unwrap_or_default().into_iter().collect(),
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
            ..Default::default()
        }))
    }

    async fn upload_part(&self, mut req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let c = self.caller(&req).await?;
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
        let record: Recorder = Box::new(move |t, w| {
            let part = Part { tree: w.tree.to_hex(), size: w.size, etag: hex::encode(w.md5), time_ms: now_ms() };
            t.buckets(|st, repo| {
                // The upload may have been completed or aborted while the part streamed in.
                upload_of(st, &bucket, &upload, &key)?;
                buckets::append(repo, st, Record::Part { bucket, upload, number, part }).map_err(s3err)
            })?;
            Ok(None)
        });
        let body = i.body.take();
        let (w, _) = self.store_body(&c, &i.key, len, body, i.content_md5.as_deref(), plan, record).await?;
        let etag = hex::encode(w.md5);
        Ok(S3Response::new(UploadPartOutput { e_tag: Some(ETag::Strong(etag)), ..Default::default() }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let c = self.caller(&req).await?;
        let i = req.input;
        let listed: Vec<(i32, String)> = i
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.part_number.unwrap_or(0), p.e_tag.map(|e| e.value().to_string()).unwrap_or_default()))
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
                if appender && st.buckets[&bucket].current(&key).is_some() {
                    return Err(s3_error!(AccessDenied, "an appender key may not overwrite {key}, which exists"));
                }
                let mut trees = Vec::new();
                let (mut size, mut md5s) = (0u64, Vec::new());
                for (n, (number, etag)) in listed.iter().enumerate() {
                    let p = u.parts.get(&(*number as u32)).filter(|p| p.etag == *etag).ok_or_else(|| {
                        s3_error!(InvalidPart, "part {number} with ETag {etag} was not uploaded to {upload}")
                    })?;
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
        Ok(S3Response::new(CompleteMultipartUploadOutput {
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
