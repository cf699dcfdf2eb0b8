DROP TABLE worker;
DROP TABLE solution;
DROP TABLE job;
