//! The dfs rules.

use super::*;

#[test]
fn sha256_is_the_standard_one() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let mut s = Sha256Stream::default();
    s.update(b"a");
    s.update(b"bc");
    assert_eq!(s.finish_hex(), sha256_hex(b"abc"));
}

#[test]
fn chunk_ids_never_leave_the_directory() {
    for ok in ["a", "abc-DEF_123", &"x".repeat(128)] {
        assert!(ChunkId::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "../etc",
        "a/b",
        "..",
        ".",
        "a.b",
        "a b",
        "é",
        "a\0",
        &"x".repeat(129),
        "a\\b",
    ] {
        assert!(ChunkId::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn frames_split_at_the_delimiter_after_the_header() {
    let f = split_frame(b"{\"a\":1}\n\nxyz\n\n", true).unwrap();
    assert_eq!(f.header["a"], 1);
    assert_eq!(f.body, b"xyz\n\n");
    // A pretty header with blank lines inside still parses.
    let f = split_frame(b"{\n\n\"a\": \"x\\n\\ny\"\n}\n\nB", true).unwrap();
    assert_eq!(f.header["a"], "x\n\ny");
    assert_eq!(f.body, b"B");
    // Empty body.
    assert_eq!(split_frame(b"{}\n\n", true).unwrap().body, b"");
    // Binary bytes after the delimiter.
    let with_room = |room: usize| {
        let mut v = vec![9u8; room];
        v.extend_from_slice(&[0, 255, 10, 10, 1]);
        frame_in_place(v, room, br#"{"k":"v"}"#)
    };
    let (in_place, no_room) = (with_room(16), with_room(3));
    let mut buf = encode_frame(&serde_json::json!({"k": "v"}), &[0, 255, 10, 10, 1]);
    assert_eq!((&in_place[..], &no_room[..]), (&buf[..], &buf[..]));
    assert_eq!(split_frame(&buf, true).unwrap().body, &[0, 255, 10, 10, 1]);
    buf.truncate(3);
    assert_eq!(split_frame(&buf, true), Err(FrameError::NoDelimiter));
}

#[test]
fn bad_frames_are_errors() {
    assert_eq!(split_frame(b"", true), Err(FrameError::Empty));
    assert_eq!(
        split_frame(b"{\"a\":1}", true),
        Err(FrameError::NoDelimiter)
    );
    assert_eq!(
        split_frame(b"{\"a\":1}\n", true),
        Err(FrameError::NoDelimiter)
    );
    assert_eq!(split_frame(b"{\"a\":", true), Err(FrameError::NoDelimiter));
    assert_eq!(split_frame(b"[1]\n\n", true), Err(FrameError::NotAnObject));
    assert!(matches!(
        split_frame(b"nope\n\n", true),
        Err(FrameError::BadJson(_))
    ));
    // Without a body requirement, a lone header is fine.
    assert!(split_frame(b"{\"a\":1}", false).unwrap().body.is_empty());
    assert!(split_frame(b"{\"a\":1} junk", false).is_err());
}

fn upload(size: u64, sha: &str) -> UploadChunk {
    UploadChunk {
        request_type: "UPLOAD_CHUNK".into(),
        chunk_id: "c1".into(),
        chunk_index: 0,
        chunk_size: size,
        user_id: None,
        file_id: None,
        sha256: sha.into(),
    }
}

#[test]
fn uploads_are_checked() {
    let body = b"hello";
    let sha = sha256_hex(body);
    assert!(check_upload(&upload(5, &sha), body, 10).is_ok());
    assert!(check_upload(&upload(4, &sha), body, 10)
        .unwrap_err()
        .contains("size mismatch"));
    assert!(check_upload(&upload(5, &sha256_hex(b"x")), body, 10)
        .unwrap_err()
        .contains("checksum mismatch"));
    assert!(check_upload(&upload(5, &sha), body, 4)
        .unwrap_err()
        .contains("largest chunk"));
    assert!(check_upload(&upload(5, "abc"), body, 10).is_err());
    let mut u = upload(5, &sha);
    u.chunk_id = "../x".into();
    assert!(check_upload(&u, body, 10).is_err());
}

fn commit(chunks: Vec<(u32, u64)>) -> CommitFile {
    CommitFile {
        file_id: "f".into(),
        name: "v.mp4".into(),
        size: chunks.iter().map(|c| c.1).sum(),
        sha256: "a".repeat(64),
        chunks: chunks
            .into_iter()
            .map(|(i, s)| FileChunk {
                chunk_id: format!("c{i}"),
                chunk_index: i,
                size: s,
                sha256: "b".repeat(64),
            })
            .collect(),
        replicas: None,
    }
}

#[test]
fn commits_are_checked() {
    assert!(check_commit(&commit(vec![]), 10).is_ok());
    assert!(check_commit(&commit(vec![(1, 3), (0, 4)]), 10).is_ok());
    assert!(check_commit(&commit(vec![(0, 3), (2, 4)]), 10).is_err());
    assert!(check_commit(&commit(vec![(0, 3), (0, 4)]), 10).is_err());
    assert!(check_commit(&commit(vec![(0, 11)]), 10).is_err());
    let mut c = commit(vec![(0, 3)]);
    c.size = 4;
    assert!(check_commit(&c, 10).is_err());
}

#[test]
fn file_decisions() {
    let c = normalise_commit(commit(vec![(1, 3), (0, 4)]), 3);
    assert_eq!(c.chunks[0].chunk_index, 0);
    let mut s = FileState::default();
    let Decision::Append(e) = decide_commit(&s, &c).unwrap() else {
        panic!()
    };
    runtime::store::Aggregate::apply(&mut s, &e);
    assert_eq!(decide_commit(&s, &c), Ok(Decision::AlreadyDone));
    let mut other = c.clone();
    other.name = "x".into();
    assert!(matches!(
        decide_commit(&s, &other),
        Err(FileError::Conflict(_))
    ));
    let d = decide_delete(&s, "f").unwrap();
    runtime::store::Aggregate::apply(&mut s, &d);
    assert!(matches!(
        decide_delete(&s, "f"),
        Err(FileError::NotFound(_))
    ));
    assert!(matches!(decide_commit(&s, &c), Err(FileError::Conflict(_))));
    assert!(matches!(
        decide_delete(&FileState::default(), "g"),
        Err(FileError::NotFound(_))
    ));
}

#[test]
fn server_decisions() {
    let mut s = ServerState::default();
    assert!(decide_silent(&s, "a").is_none());
    let j = decide_heard(&s, "a", "dfs.chunk.a").unwrap();
    runtime::store::Aggregate::apply(&mut s, &j);
    assert!(decide_heard(&s, "a", "dfs.chunk.a").is_none());
    let l = decide_silent(&s, "a").unwrap();
    runtime::store::Aggregate::apply(&mut s, &l);
    assert!(!s.live);
}

fn status(id: &str, wanted: u32, holders: &[&str]) -> ChunkStatus {
    ChunkStatus {
        chunk_id: id.into(),
        wanted,
        holders: holders.iter().map(|s| (*s).to_string()).collect(),
    }
}

#[test]
fn planner_repairs_fewest_first_and_spreads_load() {
    let load: BTreeMap<String, u64> = [("a", 5), ("b", 5), ("c", 1), ("d", 0)]
        .iter()
        .map(|(s, n)| ((*s).to_string(), *n))
        .collect();
    let actions = plan(
        &[
            status("two", 3, &["a", "b"]),
            status("one", 3, &["a"]),
            status("ok", 3, &["a", "b", "c"]),
        ],
        &load,
    );
    // "one" (1 replica) comes first and gets two copies, on the least-loaded servers.
    assert_eq!(
        actions[0],
        Action::Copy {
            chunk_id: "one".into(),
            sources: vec!["a".into()],
            target: "d".into()
        }
    );
    assert_eq!(
        actions[1],
        Action::Copy {
            chunk_id: "one".into(),
            sources: vec!["a".into()],
            target: "c".into()
        }
    );
    assert!(matches!(&actions[2], Action::Copy { chunk_id, .. } if chunk_id == "two"));
    assert_eq!(actions.len(), 3);
}

#[test]
fn planner_drops_surplus_and_garbage_and_skips_lost() {
    let load: BTreeMap<String, u64> = [("a", 1), ("b", 9), ("c", 2)]
        .iter()
        .map(|(s, n)| ((*s).to_string(), *n))
        .collect();
    let actions = plan(
        &[
            status("x", 2, &["a", "b", "c"]),
            status("g", 0, &["a"]),
            status("lost", 3, &[]),
        ],
        &load,
    );
    assert!(actions.contains(&Action::Drop {
        chunk_id: "x".into(),
        server: "b".into()
    }));
    assert!(actions.contains(&Action::Drop {
        chunk_id: "g".into(),
        server: "a".into()
    }));
    assert_eq!(actions.len(), 2);
    // Not enough servers: copies only where possible.
    let actions = plan(
        &[status("y", 3, &["a"])],
        &[("a".to_string(), 0), ("b".to_string(), 0)]
            .into_iter()
            .collect(),
    );
    assert_eq!(actions.len(), 1);
}

#[test]
fn ranges() {
    let p = |h: &str| parse_range(Some(h), 100);
    assert_eq!(parse_range(None, 100), RangeAsk::Whole);
    assert_eq!(
        p("bytes=0-9"),
        RangeAsk::Part(ByteRange { start: 0, end: 9 })
    );
    assert_eq!(
        p("bytes=50-"),
        RangeAsk::Part(ByteRange { start: 50, end: 99 })
    );
    assert_eq!(
        p("bytes=-10"),
        RangeAsk::Part(ByteRange { start: 90, end: 99 })
    );
    assert_eq!(
        p("bytes=-1000"),
        RangeAsk::Part(ByteRange { start: 0, end: 99 })
    );
    assert_eq!(
        p("bytes=90-1000"),
        RangeAsk::Part(ByteRange { start: 90, end: 99 })
    );
    assert_eq!(p("bytes=100-"), RangeAsk::Unsatisfiable);
    assert_eq!(p("bytes=-0"), RangeAsk::Unsatisfiable);
    assert_eq!(p("bytes=5-2"), RangeAsk::Whole);
    assert_eq!(p("bytes=0-1,5-6"), RangeAsk::Whole);
    assert_eq!(p("items=0-1"), RangeAsk::Whole);
    assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
}

#[test]
fn spans_cover_exactly_the_range() {
    let chunks: Vec<FileChunk> = [4u64, 4, 2]
        .iter()
        .enumerate()
        .map(|(i, s)| FileChunk {
            chunk_id: format!("c{i}"),
            chunk_index: i as u32,
            size: *s,
            sha256: String::new(),
        })
        .collect();
    assert_eq!(
        chunk_span(&chunks, 0, 9),
        vec![(0, 0..4), (1, 0..4), (2, 0..2)]
    );
    assert_eq!(chunk_span(&chunks, 3, 4), vec![(0, 3..4), (1, 0..1)]);
    assert_eq!(chunk_span(&chunks, 9, 9), vec![(2, 1..2)]);
    assert_eq!(chunk_span(&chunks, 4, 7), vec![(1, 0..4)]);
}

#[test]
fn coordinator_requests_parse() {
    use schemas::dfs::CoordinatorRequest;
    let r: CoordinatorRequest =
        serde_json::from_str(r#"{"request_type":"GET_CLIENT_ID"}"#).unwrap();
    assert_eq!(r, CoordinatorRequest::GET_CLIENT_ID {});
    let r: CoordinatorRequest = serde_json::from_str(
        r#"{"request_type":"COMMIT_FILE","file_id":"f","name":"n","size":0,"sha256":"x","chunks":[]}"#,
    )
    .unwrap();
    assert!(matches!(r, CoordinatorRequest::COMMIT_FILE(_)));
    assert!(serde_json::from_str::<CoordinatorRequest>(r#"{"request_type":"NOPE"}"#).is_err());
    assert!(serde_json::from_str::<CoordinatorRequest>(r#"{"request_type":"GET_FILE"}"#).is_err());
}
