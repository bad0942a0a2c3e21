//! The dfs rules: the file and server decisions given / when / then (`runtime::testing`); ids,
//! framing, checks, the planner and ranges plainly. Refusals are compared with `==`.

use super::*;
use runtime::testing::{given, given_state};

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
    let only = |c: &str| format!("chunk_id may hold only A-Z, a-z, 0-9, '_' and '-'; found {c}");
    for (bad, expected) in [
        (
            "",
            "chunk_id must be 1 to 128 characters; got 0".to_string(),
        ),
        ("../etc", only("'.'")),
        ("a/b", only("'/'")),
        ("..", only("'.'")),
        (".", only("'.'")),
        ("a.b", only("'.'")),
        ("a b", only("' '")),
        ("é", only("'é'")),
        ("a\0", only("'\\0'")),
        (
            &"x".repeat(129),
            "chunk_id must be 1 to 128 characters; got 129".to_string(),
        ),
        ("a\\b", only("'\\\\'")),
    ] {
        assert_eq!(ChunkId::parse(bad).err(), Some(expected), "{bad:?}");
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
    assert_eq!(
        split_frame(b"nope\n\n", true),
        Err(FrameError::BadJson(
            "expected ident at line 1 column 2".into()
        ))
    );
    // Without a body requirement, a lone header is fine.
    assert!(split_frame(b"{\"a\":1}", false).unwrap().body.is_empty());
    assert_eq!(
        split_frame(b"{\"a\":1} junk", false),
        Err(FrameError::BadJson(
            "unexpected bytes after the JSON header".into()
        ))
    );
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
    let refused = |u: &UploadChunk, max: u64| check_upload(u, body, max).err();
    assert_eq!(
        refused(&upload(4, &sha), 10).as_deref(),
        Some("size mismatch: chunk_size is 4 but 5 bytes followed the header")
    );
    assert_eq!(
        refused(&upload(5, &sha256_hex(b"x")), 10),
        Some(format!(
            "checksum mismatch: the bytes hash to {sha}, not {}",
            sha256_hex(b"x")
        ))
    );
    assert_eq!(
        refused(&upload(5, &sha), 4).as_deref(),
        Some("chunk_size 5 is over the largest chunk this server takes (4 bytes)")
    );
    assert_eq!(
        refused(&upload(5, "abc"), 10).as_deref(),
        Some("sha256 must be 64 hex digits")
    );
    let mut u = upload(5, &sha);
    u.chunk_id = "../x".into();
    assert_eq!(
        refused(&u, 10).as_deref(),
        Some("chunk_id may hold only A-Z, a-z, 0-9, '_' and '-'; found '.'")
    );
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
    let invalid = |m: &str| Err(FileError::Invalid(m.into()));
    assert_eq!(check_commit(&commit(vec![]), 10), Ok(()));
    assert_eq!(check_commit(&commit(vec![(1, 3), (0, 4)]), 10), Ok(()));
    assert_eq!(
        check_commit(&commit(vec![(0, 3), (2, 4)]), 10),
        invalid("chunk indices must be 0..2; 1 is missing")
    );
    assert_eq!(
        check_commit(&commit(vec![(0, 3), (0, 4)]), 10),
        invalid("chunk_index 0 appears twice")
    );
    assert_eq!(
        check_commit(&commit(vec![(0, 11)]), 10),
        invalid("chunk c0 is 11 bytes; chunks are at most 10")
    );
    let mut c = commit(vec![(0, 3)]);
    c.size = 4;
    assert_eq!(
        check_commit(&c, 10),
        invalid("the chunks add up to 3 bytes but size is 4")
    );
}

#[test]
fn file_decisions() {
    let c = normalise_commit(commit(vec![(1, 3), (0, 4)]), 3);
    assert_eq!(c.chunks[0].chunk_index, 0);
    let chunk = |i: u32, size: u64| FileChunk {
        chunk_id: format!("c{i}"),
        chunk_index: i,
        size,
        sha256: "b".repeat(64),
    };
    let committed = DfsEvent::FileCommitted {
        file_id: "f".into(),
        name: "v.mp4".into(),
        size: 7,
        sha256: "a".repeat(64),
        replicas: 3,
        chunks: vec![chunk(0, 4), chunk(1, 3)],
    };
    let deleted = DfsEvent::FileDeleted {
        file_id: "f".into(),
    };
    given::<FileState>([])
        .when(|s| decide_commit(s, &c))
        .then_ok(Decision::Append(committed.clone()));
    given::<FileState>([committed.clone()])
        .when(|s| decide_commit(s, &c))
        .then_ok(Decision::AlreadyDone);
    let mut other = c.clone();
    other.name = "x".into();
    given::<FileState>([committed.clone()])
        .when(|s| decide_commit(s, &other))
        .then_err(FileError::Conflict(
            "file f is already committed with other content".into(),
        ));
    let s = given::<FileState>([committed])
        .when(|s| decide_delete(s, "f"))
        .then(deleted);
    let s = given_state(s)
        .when(|s| decide_delete(s, "f"))
        .then_err(FileError::NotFound("no file \"f\"".into()));
    given_state(s)
        .when(|s| decide_commit(s, &c))
        .then_err(FileError::Conflict(
            "file f was deleted; commit it under a new file_id".into(),
        ));
    given::<FileState>([])
        .when(|s| decide_delete(s, "g"))
        .then_err(FileError::NotFound("no file \"g\"".into()));
}

#[test]
fn server_decisions() {
    let heard = |s: &ServerState| decide_heard(s, "a", "dfs.chunk.a");
    let silent = |s: &ServerState| decide_silent(s, "a");
    given::<ServerState>([]).when_total(silent).then_events([]);
    let s = given::<ServerState>([])
        .when_total(heard)
        .then_events([DfsEvent::ServerJoined {
            server_id: "a".into(),
            subject: "dfs.chunk.a".into(),
        }]);
    let s = given_state(s).when_total(heard).then_events([]);
    let s = given_state(s)
        .when_total(silent)
        .then_events([DfsEvent::ServerLost {
            server_id: "a".into(),
        }]);
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
