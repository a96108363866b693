//! The runner's `rpc` step against a real node: litecoind 0.21 in regtest,
//! a Bitcoin Core fork with bitcoind's RPC server.

mod common;

use common::litecoind::{self, Litecoind};
use serde_json::{Value, json};
use unitgen::contract::RpcCall;
use unitgen::contract::secret::SecretString;
use unitgen::runner::rpc::{self, RpcError};

fn step(node_url: &str, wallet: Option<&str>, method: &str, params: Vec<Value>) -> RpcCall {
    RpcCall {
        url: node_url.to_owned(),
        wallet: wallet.map(str::to_owned),
        method: method.to_owned(),
        params,
        user: Some(litecoind::USER.to_owned()),
        password_etcd: Some("/bitcoind/rpc/password".to_owned()),
        cookie_file: None,
        timeout: Some("30s".to_owned()),
    }
}

fn password() -> SecretString {
    SecretString::new(litecoind::PASSWORD)
}

fn assert_backup_written(path: &std::path::Path) {
    let len = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("no backup at {}: {e}", path.display()))
        .len();
    assert!(len > 0, "{} is empty", path.display());
}

#[tokio::test]
async fn backupwallet_with_basic_auth_writes_the_backup() {
    let node = Litecoind::start();
    node.create_wallet("hot");
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join("wallet.dat");
    let call = step(
        &node.url(),
        Some("hot"),
        "backupwallet",
        vec![json!(file.to_str().unwrap())],
    );
    let result = rpc::call(&call, Some(&password())).await;
    assert_eq!(result.unwrap(), Value::Null);
    assert_backup_written(&file);
}

#[tokio::test]
async fn cookie_file_auth_works() {
    let node = Litecoind::start_with_cookie();
    node.create_wallet("hot");
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join("wallet.dat");
    let mut call = step(
        &node.url(),
        Some("hot"),
        "backupwallet",
        vec![json!(file.to_str().unwrap())],
    );
    call.user = None;
    call.password_etcd = None;
    call.cookie_file = Some(node.cookie_path().to_str().unwrap().to_owned());
    rpc::call(&call, None).await.unwrap();
    assert_backup_written(&file);

    // Without the cookie the same node refuses the call.
    call.cookie_file = None;
    let err = rpc::call(&call, None).await.unwrap_err();
    assert!(
        matches!(err, RpcError::AuthFailed { status: 401, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_password_is_an_auth_failure_that_never_shows_the_password() {
    let node = Litecoind::start();
    let wrong = "Wr0ng-Pa55word-xyzzy";
    let call = step(&node.url(), None, "getblockchaininfo", vec![]);
    let err = rpc::call(&call, Some(&SecretString::new(wrong)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::AuthFailed { status: 401, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert_eq!(
        text,
        format!(
            "RPC authentication failed at 127.0.0.1:{} (HTTP 401): check the RPC user and \
             password (or the cookie file)",
            node.port()
        )
    );
    assert!(!text.contains(wrong) && !format!("{err:?}").contains(wrong));
}

#[tokio::test]
async fn unknown_wallet_is_wallet_not_found_naming_it() {
    let node = Litecoind::start();
    node.create_wallet("hot");
    let call = step(
        &node.url(),
        Some("cold"),
        "backupwallet",
        vec![json!("/tmp/never-written.dat")],
    );
    let err = rpc::call(&call, Some(&password())).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::WalletNotFound { wallet: Some(w), code: -18, .. } if w == "cold"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "wallet `cold` not found or not loaded (code -18): Requested wallet does not exist \
             or is not loaded;"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn no_wallet_with_several_loaded_is_wallet_not_found() {
    let node = Litecoind::start();
    node.create_wallet("hot");
    node.create_wallet("cold");
    let call = step(
        &node.url(),
        None,
        "backupwallet",
        vec![json!("/tmp/never-written.dat")],
    );
    let err = rpc::call(&call, Some(&password())).await.unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::WalletNotFound {
                wallet: None,
                code: -19,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("set the step's `wallet`"), "{err}");
}

#[tokio::test]
async fn missing_destination_folder_is_backup_failed_with_the_nodes_message() {
    let node = Litecoind::start();
    node.create_wallet("hot");
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join("no-such-folder/wallet.dat");
    let call = step(
        &node.url(),
        Some("hot"),
        "backupwallet",
        vec![json!(file.to_str().unwrap())],
    );
    let err = rpc::call(&call, Some(&password())).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::BackupFailed { message, .. } if message == "Error: Wallet backup failed!"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "backupwallet to `{}` failed (code -4): Error: Wallet backup failed!;",
            file.display()
        )),
        "{text}"
    );
    assert!(text.contains("destination folder exists"), "{text}");
    assert!(!file.exists());
}

#[tokio::test]
async fn unknown_method_is_method_not_found() {
    let node = Litecoind::start();
    let call = step(&node.url(), None, "backupwalet", vec![]);
    let err = rpc::call(&call, Some(&password())).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::MethodNotFound { method } if method == "backupwalet"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("RPC method `backupwalet` not found (code -32601):"),
        "{err}"
    );
}

#[tokio::test]
async fn server_down_is_connection_failed_naming_host_and_port() {
    let port = common::free_port();
    let call = step(
        &format!("http://127.0.0.1:{port}/"),
        Some("hot"),
        "backupwallet",
        vec![json!("/tmp/never-written.dat")],
    );
    let err = rpc::call(&call, Some(&password())).await.unwrap_err();
    assert!(matches!(err, RpcError::ConnectionFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "connection to the RPC server at 127.0.0.1:{port} failed: Connection refused"
        )),
        "{text}"
    );
    assert!(text.contains("check that bitcoind is running"), "{text}");
}

#[tokio::test]
async fn wallet_name_that_needs_percent_encoding_works() {
    let node = Litecoind::start();
    let name = "my wallet/ü";
    node.create_wallet(name);
    node.create_wallet("hot");
    let dest = tempfile::tempdir().unwrap();
    let file = dest.path().join("wallet.dat");
    let call = step(
        &node.url(),
        Some(name),
        "backupwallet",
        vec![json!(file.to_str().unwrap())],
    );
    rpc::call(&call, Some(&password())).await.unwrap();
    assert_backup_written(&file);

    // The request reached that wallet, not another one.
    let call = step(&node.url(), Some(name), "getwalletinfo", vec![]);
    let info = rpc::call(&call, Some(&password())).await.unwrap();
    assert_eq!(info["walletname"], json!(name));
}
