use super::*;

#[test]
fn frames_are_parsed_without_a_json_parser() {
    let event = r#"{"type":"message","conversation":"c","id":"i","seq":42,"author":"u1","body":"m17.123456.xxxx","ts":1,"client_msg_id":"b1-17"}"#;
    assert_eq!(body_marker(event), Some((17, 123_456)));
    assert_eq!(number_after(event, r#""seq":"#), Some(42));
    let ack = r#"{"type":"ack","ref":"17","conversation":"c","client_msg_id":"b1-17","id":"i","seq":42,"ts":1}"#;
    assert_eq!(reference(ack), Some(17));
    assert_eq!(body_marker(r#"{"type":"message","body":"hello"}"#), None);
}

#[test]
fn deliveries_are_accounted_per_slot() {
    let run = Run::new(4, 40);
    run.open_window(Duration::ZERO, Duration::from_secs(60));
    let frame = run.send_frame(2, "c", 0);
    assert!(frame.contains(r#""ref":"2""#), "{frame}");
    let body_start = frame.find(r#""body":""#).expect("body") + 8;
    let body = &frame[body_start..frame.len() - 2];
    assert_eq!(body.len(), 40, "{body}");
    let event = format!(r#"{{"type":"message","seq":5,"body":"{body}"}}"#);
    let mut last_seq = 0;
    run.on_text(0, 0, &event, &mut last_seq);
    run.on_text(1, 0, &event, &mut last_seq);
    assert_eq!(last_seq, 5);
    assert_eq!(Counters::get(&run.counters.out_of_order), 1);
    let slot = run.ledger.slot(2).expect("slot");
    assert_eq!(slot.deliveries.load(Ordering::Relaxed), 2);
    run.on_text(0, 0, r#"{"type":"ack","ref":"2","seq":5}"#, &mut last_seq);
    assert_eq!(slot.state.load(Ordering::Relaxed), slot_state::ACKED);
    assert_eq!(run.latency.merged().len(), 2);
    assert_eq!(run.ack_latency.merged().len(), 1);
    assert!(run.nodes.is_none());
}

#[test]
fn deliveries_are_split_by_node() {
    let run = Run::with_nodes(4, 40, 2);
    run.open_window(Duration::ZERO, Duration::from_secs(60));
    let frame = run.send_frame(1, "c", 1);
    let body_start = frame.find(r#""body":""#).expect("body") + 8;
    let body = &frame[body_start..frame.len() - 2];
    let event = format!(r#"{{"type":"message","seq":1,"body":"{body}"}}"#);
    // Receivers on node 0, 1, 0: two cross-node deliveries, one same-node.
    for (conn, node) in [(0, 0), (1, 1), (2, 0)] {
        run.on_text(conn, node, &event, &mut 0);
    }
    let split = run.nodes.as_ref().expect("split");
    assert_eq!(split.delivered_by_node(), vec![2, 1]);
    assert_eq!(Counters::get(&split.cross_node), 2);
    assert_eq!(Counters::get(&split.same_node), 1);
    assert_eq!(split.cross_node_latency.merged().len(), 2);
    assert_eq!(split.same_node_latency.merged().len(), 1);
    assert_eq!(run.latency.merged().len(), 3);
}
