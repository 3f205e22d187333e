//! The Containers and Tasks services over gRPC: container records (run by runc v2, their
//! spec typed as an OCI runtime spec), and their processes.

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest, GetContainerRequest, GetRequest,
    KillRequest, ListContainersRequest, StartRequest, WaitRequest, WaitResponse,
};
use containerd_client::types::Mount;
use containerd_client::types::v1::Status;

use super::{Answer, Grpc};
use crate::containerd::{
    ContainerRecord, ContainerdError, ContainersService, Exit, Op, SNAPSHOTTER, TaskIo, TaskState,
    TaskStatus, TasksService,
};

/// The shim every container runs under.
const RUNC_V2: &str = "io.containerd.runc.v2";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

impl Grpc {
    async fn wait(&self, op: Op, id: &str, exec_id: &str) -> Result<Exit, ContainerdError> {
        let request = WaitRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        let answer = self.tasks().wait(self.scoped(request, None, None)).await;
        Ok(exit(answer.answer(op, id)?))
    }

    async fn start(&self, op: Op, id: &str, exec_id: &str) -> Result<u32, ContainerdError> {
        let request = StartRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.tasks()
            .start(self.request(request))
            .await
            .answer(op, id)
            .map(|r| r.pid)
    }

    async fn kill(
        &self,
        op: Op,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), ContainerdError> {
        let request = KillRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            signal,
            all,
        };
        self.tasks()
            .kill(self.request(request))
            .await
            .answer(op, id)
            .map(drop)
    }
}

fn exit(answer: WaitResponse) -> Exit {
    Exit {
        code: answer.exit_status,
        at: answer
            .exited_at
            .map(|t| UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)),
    }
}

fn record(c: Container) -> ContainerRecord {
    ContainerRecord {
        id: c.id,
        image: c.image,
        labels: c.labels,
        spec: c.spec.map(|s| s.value).unwrap_or_default(),
        snapshot_key: c.snapshot_key,
    }
}

fn task_status(status: i32) -> TaskStatus {
    match Status::try_from(status) {
        Ok(Status::Created) => TaskStatus::Created,
        Ok(Status::Running) => TaskStatus::Running,
        Ok(Status::Stopped) => TaskStatus::Stopped,
        Ok(Status::Paused | Status::Pausing) => TaskStatus::Paused,
        _ => TaskStatus::Unknown,
    }
}

#[async_trait]
impl ContainersService for Grpc {
    async fn container_create(&self, record: ContainerRecord) -> Result<(), ContainerdError> {
        let id = record.id.clone();
        let container = Container {
            id: record.id,
            labels: record.labels,
            image: record.image,
            runtime: Some(ContainerRuntime {
                name: RUNC_V2.to_owned(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_owned(),
                value: record.spec,
            }),
            snapshotter: SNAPSHOTTER.to_owned(),
            snapshot_key: record.snapshot_key,
            ..Default::default()
        };
        let request = CreateContainerRequest {
            container: Some(container),
        };
        self.containers()
            .create(self.request(request))
            .await
            .answer(Op::ContainerCreate, &id)
            .map(drop)
    }

    async fn container_get(&self, id: &str) -> Result<ContainerRecord, ContainerdError> {
        let op = Op::ContainerGet;
        let request = GetContainerRequest { id: id.to_owned() };
        self.containers()
            .get(self.request(request))
            .await
            .answer(op, id)?
            .container
            .map(record)
            .ok_or_else(|| {
                ContainerdError::new(op, id, &tonic::Status::not_found("no container record"))
            })
    }

    async fn container_delete(&self, id: &str) -> Result<(), ContainerdError> {
        let request = DeleteContainerRequest { id: id.to_owned() };
        self.containers()
            .delete(self.request(request))
            .await
            .answer(Op::ContainerDelete, id)
            .map(drop)
    }

    async fn container_list(
        &self,
        filters: Vec<String>,
    ) -> Result<Vec<ContainerRecord>, ContainerdError> {
        let request = ListContainersRequest { filters };
        self.containers()
            .list(self.request(request))
            .await
            .answer(Op::ContainerList, "")
            .map(|r| r.containers.into_iter().map(record).collect())
    }
}

#[async_trait]
impl TasksService for Grpc {
    async fn task_create(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        io: TaskIo,
    ) -> Result<(), ContainerdError> {
        let request = CreateTaskRequest {
            container_id: id.to_owned(),
            rootfs,
            stdin: io.stdin,
            stdout: io.stdout,
            stderr: io.stderr,
            terminal: io.terminal,
            ..Default::default()
        };
        self.tasks()
            .create(self.request(request))
            .await
            .answer(Op::TaskCreate, id)
            .map(drop)
    }

    async fn task_get(&self, id: &str) -> Result<Option<TaskState>, ContainerdError> {
        let request = GetRequest {
            container_id: id.to_owned(),
            exec_id: String::new(),
        };
        let process = self
            .tasks()
            .get(self.request(request))
            .await
            .answer(Op::TaskGet, id)?
            .process;
        Ok(process.map(|p| TaskState {
            status: task_status(p.status),
            pid: p.pid,
            exit_status: p.exit_status,
        }))
    }

    async fn task_start(&self, id: &str) -> Result<u32, ContainerdError> {
        self.start(Op::TaskStart, id, "").await
    }

    async fn task_wait(&self, id: &str) -> Result<Exit, ContainerdError> {
        self.wait(Op::TaskWait, id, "").await
    }

    async fn task_kill(&self, id: &str, signal: u32, all: bool) -> Result<(), ContainerdError> {
        self.kill(Op::TaskKill, id, "", signal, all).await
    }

    async fn task_delete(&self, id: &str) -> Result<(), ContainerdError> {
        let request = DeleteTaskRequest {
            container_id: id.to_owned(),
        };
        self.tasks()
            .delete(self.request(request))
            .await
            .answer(Op::TaskDelete, id)
            .map(drop)
    }

    async fn exec(&self, id: &str, exec_id: &str, process: Vec<u8>) -> Result<(), ContainerdError> {
        let request = ExecProcessRequest {
            container_id: id.to_owned(),
            stdin: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            terminal: false,
            spec: Some(prost_types::Any {
                type_url: PROCESS_TYPE_URL.to_owned(),
                value: process,
            }),
            exec_id: exec_id.to_owned(),
        };
        self.tasks()
            .exec(self.request(request))
            .await
            .answer(Op::Exec, id)
            .map(drop)
    }

    async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32, ContainerdError> {
        self.start(Op::ExecStart, id, exec_id).await
    }

    async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<Exit, ContainerdError> {
        self.wait(Op::ExecWait, id, exec_id).await
    }

    async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), ContainerdError> {
        self.kill(Op::ExecKill, id, exec_id, signal, false).await
    }

    async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<(), ContainerdError> {
        let request = DeleteProcessRequest {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
        };
        self.tasks()
            .delete_process(self.request(request))
            .await
            .answer(Op::ExecDelete, id)
            .map(drop)
    }
}
