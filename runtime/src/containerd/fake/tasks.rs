//! The fake's Containers and Tasks services: records, and processes that run until they are
//! told to exit or are killed (an exec process may be told to exit at once).

use async_trait::async_trait;
use containerd_client::types::Mount;
use tonic::Code;

use super::{FakeContainerd, Process, SIGNALLED, exists, finished, not_found, status};
use crate::containerd::{
    ContainerRecord, ContainerdError, ContainersService, Exit, Op, TaskIo, TaskState, TaskStatus,
    TasksService,
};

#[async_trait]
impl ContainersService for FakeContainerd {
    async fn container_create(&self, record: ContainerRecord) -> Result<(), ContainerdError> {
        let op = Op::ContainerCreate;
        let mut state = self.begin(op, &record.id)?;
        if state.containers.contains_key(&record.id) {
            return Err(exists(op, &record.id));
        }
        state.containers.insert(record.id.clone(), record);
        self.answer(&state, op)
    }

    async fn container_get(&self, id: &str) -> Result<ContainerRecord, ContainerdError> {
        let op = Op::ContainerGet;
        let state = self.begin(op, id)?;
        let record = state.containers.get(id).cloned();
        record.ok_or_else(|| not_found(op, id))
    }

    async fn container_delete(&self, id: &str) -> Result<(), ContainerdError> {
        let op = Op::ContainerDelete;
        let mut state = self.begin(op, id)?;
        let removed = state.containers.remove(id);
        removed.map(|_| ()).ok_or_else(|| not_found(op, id))
    }

    /// Knows one kind of filter, containerd's `labels."<key>"` (the label is present).
    async fn container_list(
        &self,
        filters: Vec<String>,
    ) -> Result<Vec<ContainerRecord>, ContainerdError> {
        let op = Op::ContainerList;
        let state = self.begin(op, "")?;
        let mut keys = Vec::new();
        for filter in &filters {
            let key = filter
                .strip_prefix("labels.\"")
                .and_then(|f| f.strip_suffix('"'))
                .ok_or_else(|| status(op, filter, Code::InvalidArgument, "unknown filter"))?;
            keys.push(key);
        }
        Ok(state
            .containers
            .values()
            .filter(|c| keys.iter().all(|k| c.labels.contains_key(*k)))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl TasksService for FakeContainerd {
    async fn task_create(
        &self,
        id: &str,
        _rootfs: Vec<Mount>,
        _io: TaskIo,
    ) -> Result<(), ContainerdError> {
        let op = Op::TaskCreate;
        let mut state = self.begin(op, id)?;
        if !state.containers.contains_key(id) {
            return Err(not_found(op, id));
        }
        if state.tasks.contains_key(id) {
            return Err(exists(op, id));
        }
        state.tasks.insert(id.to_owned(), Process::created());
        self.answer(&state, op)
    }

    async fn task_get(&self, id: &str) -> Result<Option<TaskState>, ContainerdError> {
        let op = Op::TaskGet;
        let state = self.begin(op, id)?;
        let process = state.tasks.get(id).ok_or_else(|| not_found(op, id))?;
        Ok(Some(TaskState {
            status: process.status,
            pid: process.pid,
            exit_status: process.exit_status(),
        }))
    }

    async fn task_start(&self, id: &str) -> Result<u32, ContainerdError> {
        let op = Op::TaskStart;
        let mut state = self.begin(op, id)?;
        state.next_pid += 1;
        let pid = 1000 + state.next_pid;
        let process = state.tasks.get_mut(id).ok_or_else(|| not_found(op, id))?;
        if process.status != TaskStatus::Created {
            return Err(status(op, id, Code::FailedPrecondition, "already started"));
        }
        process.status = TaskStatus::Running;
        process.pid = pid;
        self.answer(&state, op)?;
        Ok(pid)
    }

    async fn task_wait(&self, id: &str) -> Result<Exit, ContainerdError> {
        self.wait(Op::TaskWait, id, None).await
    }

    async fn task_kill(&self, id: &str, signal: u32, _all: bool) -> Result<(), ContainerdError> {
        let op = Op::TaskKill;
        let mut state = self.begin(op, id)?;
        let process = state.tasks.get_mut(id).ok_or_else(|| not_found(op, id))?;
        if process.status == TaskStatus::Stopped {
            return Err(finished(op, id));
        }
        process.stop(SIGNALLED + signal);
        Ok(())
    }

    async fn task_delete(&self, id: &str) -> Result<(), ContainerdError> {
        let op = Op::TaskDelete;
        let mut state = self.begin(op, id)?;
        let process = state.tasks.get(id).ok_or_else(|| not_found(op, id))?;
        if process.status == TaskStatus::Running {
            return Err(status(
                op,
                id,
                Code::FailedPrecondition,
                "task must be stopped before deletion: running: failed precondition",
            ));
        }
        state.tasks.remove(id);
        Ok(())
    }

    async fn exec(&self, id: &str, exec_id: &str, process: Vec<u8>) -> Result<(), ContainerdError> {
        let op = Op::Exec;
        let mut state = self.begin(op, id)?;
        if serde_json::from_slice::<serde_json::Value>(&process).is_err() {
            return Err(status(op, id, Code::InvalidArgument, "process is not JSON"));
        }
        if !state
            .tasks
            .get(id)
            .is_some_and(|p| p.status == TaskStatus::Running)
        {
            return Err(not_found(op, id));
        }
        let key = (id.to_owned(), exec_id.to_owned());
        if state.execs.contains_key(&key) {
            return Err(exists(op, id));
        }
        state.execs.insert(key, Process::created());
        Ok(())
    }

    async fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32, ContainerdError> {
        let op = Op::ExecStart;
        let mut state = self.begin(op, id)?;
        state.next_pid += 1;
        let (pid, exit) = (1000 + state.next_pid, state.exec_exit);
        let key = (id.to_owned(), exec_id.to_owned());
        let process = state.execs.get_mut(&key).ok_or_else(|| not_found(op, id))?;
        process.status = TaskStatus::Running;
        process.pid = pid;
        if let Some(code) = exit {
            process.stop(code);
        }
        Ok(pid)
    }

    async fn exec_wait(&self, id: &str, exec_id: &str) -> Result<Exit, ContainerdError> {
        self.wait(Op::ExecWait, id, Some(exec_id)).await
    }

    async fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), ContainerdError> {
        let op = Op::ExecKill;
        let mut state = self.begin(op, id)?;
        let key = (id.to_owned(), exec_id.to_owned());
        let process = state.execs.get_mut(&key).ok_or_else(|| not_found(op, id))?;
        if process.status == TaskStatus::Stopped {
            return Err(finished(op, id));
        }
        process.stop(SIGNALLED + signal);
        Ok(())
    }

    async fn exec_delete(&self, id: &str, exec_id: &str) -> Result<(), ContainerdError> {
        let op = Op::ExecDelete;
        let mut state = self.begin(op, id)?;
        let key = (id.to_owned(), exec_id.to_owned());
        match state.execs.get(&key).map(|p| p.status) {
            None => Err(not_found(op, id)),
            Some(TaskStatus::Running) => Err(status(
                op,
                id,
                Code::FailedPrecondition,
                "process must be stopped before deletion",
            )),
            Some(_) => {
                state.execs.remove(&key);
                Ok(())
            }
        }
    }
}
