use super::*;

fn registry() -> Registry {
    Registry::new(ConnLimits {
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(10),
        keep_alive_timeout: Duration::from_secs(30),
        max_connections: 3,
    })
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_gets_the_header_timeout() {
    let registry = registry();
    let conn = registry.register();
    let due = registry.epoch + Duration::from_secs(10);
    assert_eq!(registry.verdict(&conn), Verdict::WaitUntil(due));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(registry.verdict(&conn), Verdict::Close(Phase::Header));
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_gets_the_idle_timeout_then_the_header_timeout() {
    let registry = Arc::new(registry());
    let conn = registry.register();
    tokio::time::advance(Duration::from_secs(5)).await;
    drop(InFlight::start(conn.clone(), registry.clone()));
    // Idle since second 5: the keep-alive time runs from there.
    let idle_due = registry.epoch + Duration::from_secs(35);
    assert_eq!(registry.verdict(&conn), Verdict::WaitUntil(idle_due));
    tokio::time::advance(Duration::from_secs(20)).await;
    // A first byte of the next request at second 25: its head has until second 35.
    conn.head_started
        .store(registry.now_ms(), Ordering::Relaxed);
    assert_eq!(registry.verdict(&conn), Verdict::WaitUntil(idle_due));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(registry.verdict(&conn), Verdict::Close(Phase::Header));
    conn.head_started.store(NO_HEAD, Ordering::Relaxed);
    assert_eq!(registry.verdict(&conn), Verdict::Close(Phase::Idle));
}

#[tokio::test(start_paused = true)]
async fn a_request_in_progress_is_never_timed_out_by_the_watchdog() {
    let registry = Arc::new(registry());
    let conn = registry.register();
    let request = InFlight::start(conn.clone(), registry.clone());
    tokio::time::advance(Duration::from_secs(600)).await;
    assert!(matches!(registry.verdict(&conn), Verdict::WaitUntil(_)));
    drop(request);
    assert!(matches!(registry.verdict(&conn), Verdict::WaitUntil(_)));
}

#[tokio::test(start_paused = true)]
async fn shedding_takes_the_oldest_idle_http_connection_first() {
    let registry = Arc::new(registry());
    let busy = registry.register();
    let _request = InFlight::start(busy.clone(), registry.clone());
    let idle = registry.register();
    let newest = registry.register();
    assert!(registry.shed_oldest(Shed::Cap));
    // The idle one was woken (its permit is stored), the busy one was not.
    tokio::time::timeout(Duration::from_millis(1), idle.shed.notified())
        .await
        .expect("the oldest idle connection is shed");
    assert!(registry.shed_oldest(Shed::Cap));
    tokio::time::timeout(Duration::from_millis(1), newest.shed.notified())
        .await
        .expect("then the next idle one");
    assert!(registry.shed_oldest(Shed::Descriptors));
    tokio::time::timeout(Duration::from_millis(1), busy.shed.notified())
        .await
        .expect("then a busy one, when nothing else is left");
    assert!(!registry.shed_oldest(Shed::Cap));
    // A connection that ended or upgraded is not listed any more.
    registry.forget(busy.id);
    assert!(!registry.shed_oldest(Shed::Cap));
}
