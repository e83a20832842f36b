from tao_mcp.cli import main

main()
