"""Recording (rosbag2 MCAP) and conversion to LeRobot v3-layout datasets. No rclpy."""
