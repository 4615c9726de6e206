//! Search attributes and memo with the official Rust SDK: custom attributes registered through
//! OperatorService on one node, a workflow started with typed attributes and a memo that
//! upserts and unsets attributes and modifies its memo, then List / Count with Temporal's
//! filter language (typed comparisons, a KeywordList, IS NULL, GROUP BY ExecutionStatus) and
//! Describe through other nodes; an undeclared attribute is refused by name.

use futures::TryStreamExt;
use keel_sdk_tests::{client_for, cluster, run_with_worker, WAIT};
use temporalio_client::grpc::OperatorService;
use temporalio_client::tonic::Request;
use temporalio_client::{
    WorkflowCountOptions, WorkflowDescribeOptions, WorkflowGetResultOptions, WorkflowListOptions,
    WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};
use temporalio_common::search_attributes::{SearchAttributeKey, SearchAttributes};
use temporalio_common::{MemoValue, MemoValues};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    Runtime, SyncWorkflowContext, Worker, WorkerOptions, WorkflowContext, WorkflowResult,
};

const CUSTOMER: SearchAttributeKey<String> = SearchAttributeKey::keyword("KeelCustomer");
const AMOUNT: SearchAttributeKey<i64> = SearchAttributeKey::int("KeelAmount");
const TAGS: SearchAttributeKey<Vec<String>> = SearchAttributeKey::keyword_list("KeelTags");

#[workflow]
#[derive(Default)]
pub struct Tagger {
    done: bool,
}

#[workflow_methods]
impl Tagger {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<String> {
        let customer = ctx.search_attributes().get(&CUSTOMER).unwrap_or_default();
        ctx.upsert_search_attributes([
            AMOUNT.value_set(42),
            TAGS.value_set(vec!["rush".into(), "gift".into()]),
            CUSTOMER.value_unset(),
        ]);
        ctx.upsert_memo([("stage", Some(MemoValue::new("tagged".to_string())))])?;
        ctx.wait_condition(|s| s.done).await?;
        Ok(customer)
    }

    #[signal]
    pub fn finish(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _why: String) {
        self.done = true;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_are_registered_upserted_listed_counted_and_described() -> anyhow::Result<()> {
    let (c, _leader, followers) = cluster().await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let worker_client = client_for(c.node(followers[0]).client_addr()).await?;
    let options = WorkerOptions::new("sa")
        .register_workflow::<Tagger>()?
        .build();
    let mut worker = Worker::new(&runtime, worker_client, options)?;
    let client = client_for(c.node(followers[1]).client_addr()).await?;

    // Registered through one follower (forwarded to the leader), listed through the other.
    let mut registrar = client.connection().clone();
    OperatorService::add_search_attributes(
        &mut registrar,
        Request::new(AddSearchAttributesRequest {
            namespace: "default".into(),
            search_attributes: [
                ("KeelCustomer", IndexedValueType::Keyword),
                ("KeelAmount", IndexedValueType::Int),
                ("KeelTags", IndexedValueType::KeywordList),
            ]
            .into_iter()
            .map(|(k, t)| (k.to_string(), t as i32))
            .collect(),
        }),
    )
    .await?;
    let mut lister = worker_client_connection(&c, followers[0]).await?;
    let listed = OperatorService::list_search_attributes(
        &mut lister,
        Request::new(ListSearchAttributesRequest {
            namespace: "default".into(),
        }),
    )
    .await?
    .into_inner();
    assert_eq!(
        listed.custom_attributes.get("KeelAmount"),
        Some(&(IndexedValueType::Int as i32))
    );
    assert_eq!(
        listed.system_attributes.get("WorkflowId"),
        Some(&(IndexedValueType::Keyword as i32))
    );

    let undeclared = client
        .start_workflow(
            Tagger::run,
            (),
            WorkflowStartOptions::new("sa", "sa-undeclared")
                .search_attributes(SearchAttributes::new([
                    SearchAttributeKey::<String>::keyword("NotRegistered").value_set("x".into()),
                ]))
                .build(),
        )
        .await;
    let refusal = format!("{:?}", undeclared.err());
    assert!(
        refusal.contains("no mapping defined for search attribute NotRegistered"),
        "{refusal}"
    );

    let scenario = async {
        let mut memo = MemoValues::new();
        memo.insert("origin", "sdk-test".to_string());
        let handle = client
            .start_workflow(
                Tagger::run,
                (),
                WorkflowStartOptions::new("sa", "sa-order-1")
                    .search_attributes(SearchAttributes::new([CUSTOMER.value_set("acme".into())]))
                    .memo(memo)
                    .build(),
            )
            .await?;
        let upserted = keel_server::local_cluster::wait_for(
            WAIT,
            "the workflow's upsert is visible in Describe",
            || async {
                handle
                    .describe(WorkflowDescribeOptions::default())
                    .await
                    .ok()
                    .filter(|d| d.search_attributes().get(&AMOUNT) == Some(42))
            },
        )
        .await?;
        let ids = |query: &'static str| {
            let client = client.clone();
            async move {
                let rows: Vec<_> = client
                    .list_workflows(query, WorkflowListOptions::default())
                    .try_collect()
                    .await?;
                anyhow::Ok(rows.iter().map(|r| r.id().to_string()).collect::<Vec<_>>())
            }
        };
        let by_amount_and_tag = ids("KeelAmount = 42 AND KeelTags = 'gift'").await?;
        let unset_customer = ids("KeelCustomer IS NULL AND KeelAmount >= 40").await?;
        let tag_in = ids("KeelTags IN ('none', 'rush') AND WorkflowType = 'Tagger'").await?;
        let too_big = client
            .count_workflows("KeelAmount > 100", WorkflowCountOptions::default())
            .await?
            .count();
        let grouped = client
            .count_workflows(
                "WorkflowType = 'Tagger' GROUP BY ExecutionStatus",
                WorkflowCountOptions::default(),
            )
            .await?;
        let groups: Vec<(Option<String>, usize)> = grouped
            .groups()
            .iter()
            .map(|g| (g.get::<String>(0), g.count()))
            .collect();
        let bad_query = client
            .count_workflows("KeelAmount > 'many'", WorkflowCountOptions::default())
            .await;

        handle
            .signal(
                Tagger::finish,
                "done".to_string(),
                WorkflowSignalOptions::default(),
            )
            .await?;
        let result =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await??;
        let completed = ids("KeelAmount = 42 AND ExecutionStatus = 'Completed'").await?;
        // Counted from apply's status counts (no other condition) and by a scan: the same.
        let by_counts = client
            .count_workflows(
                "ExecutionStatus = 'Completed'",
                WorkflowCountOptions::default(),
            )
            .await?
            .count();
        let by_scan = client
            .count_workflows(
                "ExecutionStatus = 'Completed' AND WorkflowId STARTS_WITH 'sa-'",
                WorkflowCountOptions::default(),
            )
            .await?
            .count();
        let all_grouped: Vec<(Option<String>, usize)> = client
            .count_workflows("GROUP BY ExecutionStatus", WorkflowCountOptions::default())
            .await?
            .groups()
            .iter()
            .map(|g| (g.get::<String>(0), g.count()))
            .collect();
        anyhow::Ok((
            (by_counts, by_scan, all_grouped),
            upserted,
            by_amount_and_tag,
            unset_customer,
            tag_in,
            too_big,
            groups,
            bad_query.is_err(),
            result,
            completed,
        ))
    };
    let (
        (by_counts, by_scan, all_grouped),
        upserted,
        by_amount_and_tag,
        unset_customer,
        tag_in,
        too_big,
        groups,
        bad,
        result,
        done,
    ) = run_with_worker(&mut worker, scenario).await?;
    assert_eq!((by_counts, by_scan), (1, 1));
    assert_eq!(all_grouped, [(Some("Completed".to_string()), 1)]);

    assert_eq!(result, "acme", "the workflow saw its start attributes");
    assert_eq!(
        upserted.search_attributes().get(&TAGS),
        Some(vec!["rush".to_string(), "gift".to_string()])
    );
    assert_eq!(upserted.search_attributes().get(&CUSTOMER), None, "unset");
    let memo = upserted.memo();
    assert_eq!(memo.get::<String>("origin")?, Some("sdk-test".to_string()));
    assert_eq!(memo.get::<String>("stage")?, Some("tagged".to_string()));
    assert_eq!(by_amount_and_tag, ["sa-order-1"]);
    assert_eq!(unset_customer, ["sa-order-1"]);
    assert_eq!(tag_in, ["sa-order-1"]);
    assert_eq!(too_big, 0);
    assert_eq!(groups, [(Some("Running".to_string()), 1)]);
    assert!(bad, "a value of the wrong type is INVALID_ARGUMENT");
    assert_eq!(done, ["sa-order-1"]);
    Ok(())
}

/// A connection to another node, for reads that must see a registration made elsewhere.
async fn worker_client_connection(
    c: &keel_server::local_cluster::LocalCluster,
    node: u64,
) -> anyhow::Result<temporalio_client::Connection> {
    Ok(client_for(c.node(node).client_addr())
        .await?
        .connection()
        .clone())
}
