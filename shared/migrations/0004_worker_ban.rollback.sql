DROP TABLE worker_ban;
